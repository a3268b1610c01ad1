"""``comfyui-worker``: runs prompts from the broker's prompts queue (see
:mod:`comfyui.distributed.broker`) and records them in the shared store.

One prompt's path through a worker:

1. the message is decoded (:mod:`.messages`); one that does not parse or validate goes to the
   dead-letter exchange with the reason, and is acked (it never reaches the engine);
2. the job is claimed in the store; a job that is finished already (a redelivered message
   whose result was recorded, a cancelled job) is acked without running;
3. the engine (the same :class:`~comfyui.engine.engine.Engine` as a single process, in-memory
   queue) runs it; its events go to the events exchange as they happen;
4. the history entry is written to the store, then ``executing {node: None}`` and the result
   are published, then the message is acked. A worker killed anywhere before the ack leaves
   the message unacked: RabbitMQ delivers it again (to another worker), up to the delivery
   limit, after which the dead-letter report records the job as failed.

SIGTERM (or SIGINT): stop consuming, finish and ack the prompts in hand, tell the frontends,
exit 0. A lost broker connection is re-established with backoff; prompts that were running
finish and are recorded, and their redelivered messages are then acked without running.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import io
import logging
import os
import signal
import socket
import sys
import time
import uuid
from typing import Any, Sequence

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from ..engine.queue import QueueItem
from ..engine.validation import PromptError
from .broker import REASON_HEADER, Backoff, Topology, connect, describe, lost, topology_of
from .messages import (BadMessage, ControlMessage, EventMessage, PromptMessage, ResultMessage, WorkerMessage,
                       decode, encode)
from .routing import loaded_checkpoints, model_folders
from .store import ClusterStore, failed_entry

log = logging.getLogger("comfyui.worker")

HEARTBEAT_S = 5.0
OUTBOX_LIMIT = 10000  # events kept while the broker is away (the oldest go first)


class Outbox:
    """Messages waiting for the broker, in order; kept while it is away (the oldest dropped
    past ``limit``), sent once a connection drains them."""

    def __init__(self, limit: int):
        self.items: collections.deque = collections.deque(maxlen=limit)
        self.ready = asyncio.Event()

    def put(self, entry: Any) -> None:
        self.items.append(entry)
        self.ready.set()

    async def drain(self, publish, lost, batch: int = 64) -> None:
        """Publish until cancelled, up to ``batch`` messages at once (in order, their confirms
        awaited together); on a lost channel the unconfirmed ones stay first and this returns."""
        while True:
            while not self.items:
                self.ready.clear()
                await self.ready.wait()
            entries = [self.items[i] for i in range(min(batch, len(self.items)))]
            results = await asyncio.gather(*(publish(e) for e in entries), return_exceptions=True)
            for entry, result in zip(entries, results):
                if isinstance(result, Exception):
                    if lost():
                        return
                    log.error("could not publish %s (%s); dropped", entry[1], result)
                self.items.popleft()

    async def empty(self, timeout: float = 5.0) -> None:
        for _ in range(int(timeout / 0.01)):
            if not self.items:
                return
            await asyncio.sleep(0.01)


def item_of_message(msg: PromptMessage) -> QueueItem:
    prompt = {node_id: node.model_dump() for node_id, node in msg.prompt.items()}
    return QueueItem(number=msg.number, prompt_id=msg.prompt_id, prompt=prompt, extra_data=dict(msg.extra_data),
                     outputs=list(msg.outputs), client_id=msg.client_id, created_at=msg.submitted_at)


def encode_preview(data: dict) -> dict | None:
    """A preview_image event's data as JSON: the image encoded (JPEG/PNG, at most max_size) in base64."""
    image, fmt = data.get("image"), str(data.get("format") or "JPEG").upper()
    if isinstance(image, (bytes, bytearray)):
        raw = bytes(image)
    elif hasattr(image, "save"):
        max_size = data.get("max_size")
        if max_size:
            image = image.copy()
            image.thumbnail((int(max_size), int(max_size)))
        buf = io.BytesIO()
        if fmt == "PNG":
            image.save(buf, format="PNG", compress_level=1)
        else:
            fmt = "JPEG"
            image.convert("RGB").save(buf, format="JPEG", quality=95)
        raw = buf.getvalue()
    else:
        return None
    return {"format": fmt, "image_b64": base64.b64encode(raw).decode("ascii"),
            "metadata": dict(data.get("metadata") or {})}


class Worker:
    def __init__(self, config: Any, engine: Any, store: ClusterStore, *, worker_id: str | None = None):
        self.config, self.engine, self.store = config, engine, store
        self.uri = config.distributed_queue_connection_uri
        self.topology: Topology = topology_of(config)
        self.concurrency = max(1, int(getattr(config, "worker_concurrency", 1) or 1))
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.connected = False
        self.stopping = False
        self.running: dict[str, asyncio.Task] = {}  # prompt id -> its handler
        self.loop: asyncio.AbstractEventLoop | None = None
        self.outbox: Outbox | None = None
        self.seq = 0  # of the events and results it sent
        self.model_files: dict[str, str] = {}  # model files of prompts it ran: name -> folder

    # ---- lifecycle ----
    async def run(self, stop: asyncio.Event) -> None:
        self.loop = asyncio.get_running_loop()
        self.outbox = Outbox(OUTBOX_LIMIT)
        self.engine.add_listener(self._on_engine_event)
        self.engine.start()
        backoff = Backoff()
        try:
            while not stop.is_set():
                try:
                    connection = await connect(self.uri, self.topology, f"comfyui-worker {self.worker_id}")
                except Exception as e:  # noqa: BLE001 - retried with backoff
                    log.warning("broker %s unreachable (%s: %s); retrying", describe(self.uri), type(e).__name__, e)
                    await _wait_or(stop, backoff.wait())
                    continue
                backoff.reset()
                try:
                    await self._serve(connection, stop)
                except Exception as e:  # noqa: BLE001
                    log.warning("broker connection lost (%s: %s); reconnecting", type(e).__name__, e)
                finally:
                    self.connected = False
                    if not connection.is_closed:
                        await connection.close()
                if not stop.is_set():
                    await _wait_or(stop, backoff.wait())
        finally:
            if self.running:  # stopped while away from the broker: still finish and record them
                await asyncio.wait(list(self.running.values()))
            self.engine.stop()
            self.engine.remove_listener(self._on_engine_event)

    async def _serve(self, connection: Any, stop: asyncio.Event) -> None:
        work = await connection.channel(publisher_confirms=True)
        await work.set_qos(prefetch_count=self.concurrency)
        self.dead_exchange = await work.get_exchange(self.topology.dead)
        prompts = await work.get_queue(self.topology.prompts, ensure=False)
        front = await work.get_queue(self.topology.front_prompts, ensure=False)
        events = await connection.channel(publisher_confirms=True)  # in order, each confirmed
        publisher = asyncio.create_task(self._publish_outbox(events))
        control = await connection.channel()
        control_queue = await self.topology.declare_listener(control, self.topology.control, self.worker_id, "")
        await control_queue.consume(self._on_control, no_ack=True)
        reports = await connection.channel()
        await reports.set_qos(prefetch_count=1)
        await (await reports.get_queue(self.topology.dead_report, ensure=False)).consume(self._on_dead_letter)
        own = await self.topology.declare_worker_queue(work, self.worker_id)  # prompts routed here
        consumers = [(queue, await queue.consume(self._on_prompt)) for queue in (front, prompts, own)]
        self.connected = True
        self._state("ready")
        log.info("worker %s consuming %s on %s (concurrency %d)", self.worker_id, self.topology.prompts,
                 describe(self.uri), self.concurrency)
        heartbeat = asyncio.create_task(self._heartbeat())
        stopping = asyncio.create_task(stop.wait())
        closed = lost(connection)
        try:
            await asyncio.wait([stopping, closed], return_when=asyncio.FIRST_COMPLETED)
            if closed.done() and not stop.is_set():
                log.warning("broker connection lost; reconnecting (running prompts finish and are recorded)")
            if stop.is_set() and not connection.is_closed:
                self.stopping = True
                for queue, tag in consumers:  # nothing new; unstarted prefetched ones go back
                    await queue.cancel(tag)
                self._state("stopping")
                if self.running:
                    log.info("stopping: finishing %d prompt(s)", len(self.running))
                    await asyncio.wait(list(self.running.values()))
                self._state("gone")
                await self.outbox.empty()
        finally:
            heartbeat.cancel()
            stopping.cancel()
            closed.cancel()
            publisher.cancel()

    async def _heartbeat(self) -> None:
        """The state again every HEARTBEAT_S: frontends that started later learn of this worker,
        and forget one that stops sending."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if not self.stopping:
                self._state("ready")

    # ---- prompts ----
    async def _on_prompt(self, message: AbstractIncomingMessage) -> None:
        try:
            msg = decode(message.body)
            if not isinstance(msg, PromptMessage):
                raise BadMessage(f"a {msg.kind} message in the prompts queue")
        except BadMessage as e:
            await self._dead_letter(message, e.reason)
            return
        if self.stopping:
            await _settle(message.nack(requeue=True))
            return
        # a task of its own: aio-pika cancels its consumer callbacks when the connection goes,
        # and a prompt that is running must still be recorded (its redelivery is then skipped)
        task = self.running.get(msg.prompt_id)
        if task is None:
            task = self.running[msg.prompt_id] = asyncio.create_task(self._run_prompt(msg, message))
            task.add_done_callback(lambda _t: self._done(msg.prompt_id, task))
            await asyncio.shield(task)
        else:  # delivered again after a reconnection while it still runs here: one run, both acked
            await asyncio.shield(task)
            await _settle(message.ack())

    def _done(self, prompt_id: str, task: asyncio.Task) -> None:
        if self.running.get(prompt_id) is task:
            del self.running[prompt_id]
        self._state("ready")

    async def _run_prompt(self, msg: PromptMessage, message: AbstractIncomingMessage) -> None:
        t0 = time.perf_counter()
        item = item_of_message(msg)
        if not await self._db(self.store.claim, item):
            log.info("prompt %s is finished already (delivery %s): acked without running", msg.prompt_id,
                     (message.headers or {}).get("x-delivery-count", 0))
            await _settle(message.ack())
            return
        t1 = time.perf_counter()
        self._state("ready")
        try:
            await self.engine.submit_async(item.prompt, prompt_id=item.prompt_id, client_id=item.client_id,
                                           extra_data=item.extra_data, number=item.number)
            entry = await asyncio.wrap_future(self.engine.wait(item.prompt_id))
        except PromptError as e:  # valid at the frontend, not here (e.g. a model file this worker lacks)
            entry = failed_entry(item.prompt_id, "PromptValidationError", str(e))
            self._emit(item.prompt_id, item.client_id, "execution_error", entry["status"]["messages"][0][1])
        entry = {"prompt": item.as_list(), **entry} if "prompt" not in entry else entry
        t2 = time.perf_counter()
        recorded = await self._db(self.store.finish, item, entry)
        t3 = time.perf_counter()
        self.engine.delete_history([item.prompt_id])
        self.model_files.update(model_folders(item.prompt))
        while len(self.model_files) > 32:
            self.model_files.pop(next(iter(self.model_files)))
        if recorded:
            self._finished(item.prompt_id, item.client_id, entry)
        await _settle(message.ack())
        log.debug("prompt %s: claim %.1f ms, run %.1f ms, record %.1f ms, in the queue %.1f ms before", item.prompt_id,
                  (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (time.time() - msg.submitted_at) * 1e3
                  - (t3 - t0) * 1e3)

    def _finished(self, prompt_id: str, client_id: str | None, entry: dict) -> None:
        from ..jobs.listing import finished_status

        self._emit(prompt_id, client_id, "executing", {"node": None, "prompt_id": prompt_id})
        self._send(self.topology.events, "result", ResultMessage(
            prompt_id=prompt_id, client_id=client_id, status=finished_status(entry), worker_id=self.worker_id,
            seq=self._next_seq()))

    async def _db(self, fn, *args):
        """A store call, retried with backoff while the database is away."""
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                return await asyncio.to_thread(fn, *args)
            except Exception as e:  # noqa: BLE001 - the message stays unacked meanwhile
                log.warning("job store: %s: %s; retrying", type(e).__name__, e)
                await backoff.wait()

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        log.error("dead-lettering a message from %s: %s", self.topology.prompts, reason)
        headers = dict(message.headers or {})
        headers[REASON_HEADER] = reason
        headers["x-comfyui-worker"] = self.worker_id
        await self.dead_exchange.publish(aio_pika.Message(message.body, headers=headers,
                                                          content_type=message.content_type,
                                                          delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                         routing_key=self.topology.prompts, mandatory=False)
        await _settle(message.ack())

    async def _on_dead_letter(self, message: AbstractIncomingMessage) -> None:
        """A dead prompt: recorded as failed (once), its client told."""
        headers = message.headers or {}
        reason = headers.get(REASON_HEADER)
        if reason is None:
            deaths = headers.get("x-death") or [{}]
            why = deaths[0].get("reason", "rejected") if isinstance(deaths[0], dict) else "rejected"
            reason = (f"the prompt was delivered {self.topology.delivery_limit + 1} times without finishing "
                      f"(its workers stopped or were killed each time); it was dead-lettered"
                      if str(why) == "delivery_limit" else f"dead-lettered by the broker ({why})")
        try:
            msg = decode(message.body)
        except BadMessage:
            await _settle(message.ack())  # kept in the operators' dead queue with its reason
            return
        if isinstance(msg, PromptMessage):
            item = item_of_message(msg)
            entry = {"prompt": item.as_list(), **failed_entry(item.prompt_id, "DeadLettered", reason)}
            if await self._db(self.store.finish, item, entry):
                log.error("prompt %s failed: %s", item.prompt_id, reason)
                self._emit(item.prompt_id, item.client_id, "execution_error", entry["status"]["messages"][0][1])
                self._finished(item.prompt_id, item.client_id, entry)
        await _settle(message.ack())

    # ---- control ----
    async def _on_control(self, message: AbstractIncomingMessage) -> None:
        try:
            msg = decode(message.body)
        except BadMessage as e:
            log.warning("ignored a control message: %s", e.reason)
            return
        if not isinstance(msg, ControlMessage):
            return
        if msg.action == "cancel" and msg.prompt_id is not None:
            await asyncio.to_thread(self.engine.cancel, msg.prompt_id)
        elif msg.action == "free":  # done by the engine between prompts; the heartbeat then tells
            self.engine.free(unload_models=msg.unload_models, free_memory=msg.free_memory)
        else:
            self.engine.interrupt(msg.prompt_id)

    # ---- outgoing ----
    def _state(self, state: str) -> None:
        self._send(self.topology.workers, state, WorkerMessage(
            worker_id=self.worker_id, state=state, running=list(self.running), concurrency=self.concurrency,
            checkpoints=loaded_checkpoints(self.engine.runtime, self.model_files)))

    def _emit(self, prompt_id: str, client_id: str | None, event: str, data: dict) -> None:
        self._send(self.topology.events, f"event.{event}", EventMessage(
            prompt_id=prompt_id, client_id=client_id, event=event, data=data, worker_id=self.worker_id,
            seq=self._next_seq()))

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _send(self, exchange: str, routing_key: str, msg: Any) -> None:
        """Queue a message for the publisher (from the loop's thread)."""
        self.outbox.put((exchange, routing_key, msg))

    async def _publish_outbox(self, channel: Any) -> None:
        exchanges: dict[str, Any] = {}

        async def publish(entry: tuple) -> None:
            exchange, routing_key, msg = entry
            if exchange not in exchanges:
                exchanges[exchange] = await channel.get_exchange(exchange, ensure=False)
            await exchanges[exchange].publish(aio_pika.Message(encode(msg), content_type="application/json"),
                                              routing_key=routing_key, mandatory=False)

        await self.outbox.drain(publish, lambda: channel.is_closed)

    def _on_engine_event(self, event: str, data: dict, client_id: str | None) -> None:
        """The engine's listener (its worker thread): events of the running prompt go out."""
        if event == "status" or (event == "executing" and data.get("node") is None):
            return  # the cluster's status is the frontends'; the end is sent once recorded
        prompt_id = data.get("prompt_id") or (data.get("metadata") or {}).get("prompt_id") \
            or self.engine.running_prompt_id
        if prompt_id is None:
            return
        if event == "preview_image":
            data = encode_preview(data)
            if data is None:
                return
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._emit, prompt_id, client_id, event, data)

    def health(self) -> dict:
        return {"status": "ok", "role": "worker", "worker_id": self.worker_id,
                "broker": "connected" if self.connected else "disconnected",
                "running": list(self.running), "stopping": self.stopping}

    async def serve_health(self, host: str, port: int) -> Any:
        """``GET /health`` (always 200, with the broker connection) and ``GET /ready`` (200 while
        connected and taking prompts, else 503) for orchestrators; -> the runner to clean up."""
        from aiohttp import web

        async def health(_request: web.Request) -> web.Response:
            return web.json_response(self.health())

        async def ready(_request: web.Request) -> web.Response:
            ok = self.connected and not self.stopping
            return web.json_response({"ready": ok}, status=200 if ok else 503)

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_get("/ready", ready)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("worker health on http://%s:%d/health", host, port)
        return runner


async def _settle(ack) -> None:
    """ack/nack on a channel that may be gone (the broker then delivers the message again)."""
    try:
        await ack
    except Exception as e:  # noqa: BLE001
        log.warning("could not settle a message (%s); the broker will deliver it again", e)


async def _wait_or(stop: asyncio.Event, waiting) -> None:
    waiter = asyncio.create_task(stop.wait())
    sleeper = asyncio.ensure_future(waiting)
    await asyncio.wait([waiter, sleeper], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    sleeper.cancel()


async def run_worker(config: Any, stop: asyncio.Event | None = None) -> int:
    from ..engine.engine import Engine
    from ..engine.queue import PromptQueue
    from ..runtime import Runtime, make_default

    rt = Runtime(config)
    make_default(rt)
    engine = await asyncio.to_thread(Engine.from_config, config, runtime=rt,
                                   queue=PromptQueue(max_history=256))  # the store keeps history
    store = await asyncio.to_thread(ClusterStore, config.resolved_database_url())
    worker = Worker(config, engine, store)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    health = None
    if config.worker_health_port:
        host = (config.listen or "127.0.0.1").split(",")[0].strip()
        health = await worker.serve_health(host, int(config.worker_health_port))
    try:
        await worker.run(stop)
    finally:
        if health is not None:
            await health.cleanup()
        store.close()
    log.info("worker %s stopped", worker.worker_id)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from ..cli.main import setup_logging
    from ..config import load_config
    from ..process import configure_process

    config = load_config(list(sys.argv[1:] if argv is None else argv))
    setup_logging(config)
    if not config.distributed_queue_connection_uri:
        logging.getLogger("comfyui").error("comfyui-worker needs --distributed-queue-connection-uri amqp://...")
        return 2
    if not config.database_url:
        log.warning("no --database-url: using %s; frontends and workers must share one database "
                    "(PostgreSQL for a cluster of machines)", config.resolved_database_url())
    configure_process(cpu=bool(getattr(config, "cpu", False)),
                      deterministic=bool(getattr(config, "deterministic", False)))
    return asyncio.run(run_worker(config))


if __name__ == "__main__":
    raise SystemExit(main())
