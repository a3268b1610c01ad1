"""``comfyui --distributed-queue-frontend``: the normal HTTP/WebSocket server (the official
frontend, /prompt, /queue, /history, the Jobs API, /api/v1) whose prompts run on workers.

* :class:`FrontendEngine` is the server's engine: it validates prompts with the same node
  registry as a single process (bad prompts get ComfyUI's ``node_errors`` here), but queues
  them through :class:`ClusterQueue` and runs nothing itself.
* :class:`ClusterQueue` is the job store for the routes: the shared database's ``jobs``
  table (history, the Jobs API and the queue listing are the whole cluster's, whichever
  frontend answers); ``put`` inserts the job ``pending``, publishes it to the broker with
  a publisher confirm and marks it published; the client is answered only once that happened
  (503 otherwise: nothing is left queued). Every frontend publishes again the pending jobs
  left unmarked for ``REPUBLISH_AFTER_S`` (their frontend died in between).
* :class:`FrontendBroker` holds the broker connection (reconnected with backoff): it relays
  the workers' events to this frontend's WebSocket clients (each event goes to the client
  that queued its prompt; the hub drops clients connected elsewhere), resolves waits on
  finished prompts, broadcasts interrupt / cancel, and tracks the workers' states.
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from ..engine.engine import Engine
from ..engine.queue import QueueItem, StoreUnavailable
from ..jobs.schema import IN_PROGRESS
from ..jobs.store import DurableQueue
from ..jobs.writer import count_finished
from .broker import Backoff, connect, describe, lost, topology_of
from .messages import (BadMessage, ControlMessage, EventMessage, PromptMessage, ResultMessage, WorkerMessage,
                       decode, encode)
from .routing import checkpoints_of, pick_worker
from .store import ClusterStore

log = logging.getLogger("comfyui.frontend")

WORKER_STALE_S = 15.0  # a worker not heard of for this long is no longer listed (heartbeat: 5 s)
# a pending job not marked published this long after it was created is published again; more
# than a publish's confirm timeout (10 s) plus clock differences between frontends
REPUBLISH_AFTER_S = float(os.environ.get("COMFYUI_DISTRIBUTED_REPUBLISH_AFTER_S", "30"))
EXIT_AFTER_STORE_ENV = "COMFYUI_TEST_FRONTEND_EXIT_AFTER_STORE"


class ClusterQueue(DurableQueue):
    """The cluster's jobs as the routes read them: all of it from the shared database (the
    in-memory queue of a single process stays empty)."""

    queue_in_database = True  # GET /queue reads off the event loop

    def __init__(self, url: str, store: ClusterStore):
        self.store = store
        self.broker: FrontendBroker | None = None
        self.cached_remaining = 0  # refreshed by the broker after every change it hears of
        super().__init__(url)
        self.session_start = 0.0  # /history is the cluster's, not this process's

    def _recover(self, requeue: bool) -> dict:
        return {}  # jobs in progress belong to workers; nothing is requeued or failed here

    def put(self, item: QueueItem, wait: bool = True) -> concurrent.futures.Future | None:
        future = self.broker.submit_threadsafe(item)
        if wait:
            future.result()
            return None
        return future

    def get(self, timeout: float | None = None) -> QueueItem | None:
        return None  # nothing runs here

    def remaining(self) -> int:
        return self.cached_remaining

    def get_current_queue(self) -> tuple[list, list]:
        running, pending = self.store.queued()
        return [i.as_list() for i in running], [i.as_list() for i in pending]

    def queued_items(self) -> tuple[list[QueueItem], list[QueueItem]]:
        return self.store.queued()

    def pending_items(self) -> list[QueueItem]:
        return self.store.queued()[1]

    def running_items(self) -> list[QueueItem]:
        return self.store.queued()[0]

    def find(self, prompt_id: str) -> QueueItem | None:
        found = self.store.find(prompt_id)
        return None if found is None else found[0]

    def delete(self, prompt_ids) -> list[QueueItem]:
        return self.store.cancel_pending(list(prompt_ids))

    def clear(self) -> list[QueueItem]:
        return self.store.cancel_pending([i.prompt_id for i in self.store.queued()[1]])

    def _recount(self) -> None:
        """Workers finish jobs in other processes: the counts by status are read again."""
        with self._connection() as conn:
            counts = count_finished(conn)
        with self._cond:
            self._counts = counts

    def jobs_page(self, *args: Any, **kwargs: Any):
        self._recount()
        return super().jobs_page(*args, **kwargs)

    def history_len(self) -> int:
        self._recount()
        return super().history_len()


class FrontendEngine(Engine):
    """An engine that validates and submits; the cluster's workers run the prompts."""

    store: ClusterStore
    broker: "FrontendBroker"

    @classmethod
    def for_cluster(cls, config: Any, runtime: Any = None) -> "FrontendEngine":
        url = config.resolved_database_url()
        store = ClusterStore(url)
        queue = ClusterQueue(url, store)
        engine = cls.from_config(config, runtime=runtime, queue=queue)
        engine.store = store
        engine.broker = queue.broker = FrontendBroker(engine, config)
        return engine

    _own_loop: threading.Thread | None = None

    def start(self, connect_timeout: float = 10) -> None:
        """Connect on the running loop (the server's), or, started from a thread without one (the
        embedded client), on a loop of its own; then wait up to ``connect_timeout`` seconds
        for the broker, so that the first submission is taken."""
        try:
            self.broker.start(asyncio.get_running_loop())
            return
        except RuntimeError:
            pass
        if self._own_loop is None:
            loop = asyncio.new_event_loop()
            self._own_loop = threading.Thread(target=loop.run_forever, name="comfyui-frontend-broker", daemon=True)
            self._own_loop.start()
            self.broker.start(loop)
        deadline = time.monotonic() + connect_timeout
        while not self.broker.connected and time.monotonic() < deadline:
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.broker.task is not None and not self.broker.task.done()

    def stop(self, timeout: float = 10) -> None:
        self.broker.stop()
        if self._own_loop is not None:
            loop = self.broker.loop
            loop.call_soon_threadsafe(loop.stop)
            self._own_loop.join(timeout)
            self._own_loop = None

    def _status(self) -> None:
        self.broker.refresh_status()

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Every worker interrupts the prompt (None: whatever it runs)."""
        self.broker.control("interrupt", prompt_id)
        return True

    def cancel(self, prompt_id: str) -> str | None:
        with self._ids_lock:
            removed = self.queue.delete([prompt_id])  # pending: finished as cancelled in the store
            if removed:
                self._record_cancelled(removed)
        if removed:
            self._status()
            return "pending"
        if self.store.status_of(prompt_id) == IN_PROGRESS:
            self.broker.control("cancel", prompt_id)  # a worker that holds it drops or interrupts it
            return "running"
        return None

    def free(self, unload_models: bool = False, free_memory: bool = False) -> None:
        """``/free``: every worker unloads its models / frees its memory once idle."""
        self.broker.control("free", None, unload_models=unload_models, free_memory=free_memory)

    @property
    def running_prompt_id(self) -> str | None:
        return None

    def health(self) -> dict:
        return self.broker.health()

    def ready(self) -> bool:
        return self.broker.connected


def prompt_message(item: QueueItem) -> PromptMessage:
    return PromptMessage(prompt_id=item.prompt_id, prompt=item.prompt, number=item.number, client_id=item.client_id,
                         extra_data=item.extra_data, outputs=list(item.outputs), checkpoints=checkpoints_of(item.prompt),
                         front=item.number < 0,  # submitted with front: true
                         submitted_at=item.created_at or time.time())


class FrontendBroker:
    def __init__(self, engine: FrontendEngine, config: Any):
        self.engine = engine
        self.store: ClusterStore = engine.store
        self.uri = config.distributed_queue_connection_uri
        self.topology = topology_of(config)
        self.frontend_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: concurrent.futures.Future | None = None
        self.connected = False
        self.publisher: Any = None  # the confirming channel
        self.workers: dict[str, WorkerMessage] = {}
        self.last_seq: dict[str, int] = {}  # worker id -> the number of its last event relayed
        self._stop = asyncio.Event()
        self._refreshing = self._again = False

    # ---- lifecycle ----
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.task is None:
            self.loop = loop
            self.task = asyncio.run_coroutine_threadsafe(self.run(), loop)  # (from any thread)
            self.refresh_status()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                connection = await connect(self.uri, self.topology, f"comfyui-frontend {self.frontend_id}")
            except Exception as e:  # noqa: BLE001 - retried with backoff
                log.warning("broker %s unreachable (%s: %s); retrying", describe(self.uri), type(e).__name__, e)
                await backoff.wait()
                continue
            backoff.reset()
            try:
                await self._serve(connection)
            except Exception as e:  # noqa: BLE001
                log.warning("broker connection lost (%s: %s); reconnecting", type(e).__name__, e)
            finally:
                self.connected = False
                self.publisher = None
                if not connection.is_closed:
                    await asyncio.shield(connection.close())
            await backoff.wait()

    async def _serve(self, connection: Any) -> None:
        # an unroutable prompt (its queue is gone) raises instead of vanishing
        publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        listen = await connection.channel()
        await listen.set_qos(prefetch_count=256)
        events = await self.topology.declare_listener(listen, self.topology.events, self.frontend_id)
        await events.consume(self._on_event)  # acked once relayed: a reconnection gets the rest
        workers = await listen.declare_queue(exclusive=True, auto_delete=True)
        await workers.bind(self.topology.workers)
        await workers.consume(self._on_worker, no_ack=True)
        self.control_exchange = await publisher.get_exchange(self.topology.control, ensure=False)
        self.publisher = publisher
        self.connected = True
        log.info("frontend %s submitting to %s on %s", self.frontend_id, self.topology.prompts, describe(self.uri))
        republisher = asyncio.create_task(self._republish_unpublished())
        try:
            await lost(connection)
        finally:
            republisher.cancel()
        log.warning("broker connection lost; reconnecting (submissions are refused meanwhile)")

    # ---- submissions ----
    def submit_threadsafe(self, item: QueueItem) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(self.submit(item), self.loop)

    async def submit(self, item: QueueItem) -> None:
        """Store the job, publish it with a confirm, mark it published; undone (503) if the
        store or the publish fails."""
        self.engine._secrets.pop(item.prompt_id, None)  # API keys stay here (no worker gets them)
        if self.publisher is None:
            raise StoreUnavailable("the message broker is unavailable; the prompt was not queued")
        message = prompt_message(item)  # (one that cannot be sent is refused before it is stored)
        if not await asyncio.to_thread(self.store.insert_pending, item):
            return  # the same id submitted at the same moment elsewhere: that submission stands
        if os.environ.get(EXIT_AFTER_STORE_ENV):  # tests: this frontend dies before publishing
            os._exit(137)
        try:
            await self._publish(message, route=True)
        except Exception as e:  # noqa: BLE001 - not confirmed: not queued
            await asyncio.to_thread(self.store.forget_pending, item.prompt_id)
            raise StoreUnavailable(f"the message broker did not take the prompt ({type(e).__name__}: {e}); "
                                   "it was not queued") from e
        try:
            await asyncio.to_thread(self.store.mark_published, item.prompt_id)
        except Exception as e:  # noqa: BLE001 - queued all the same; a frontend publishes it again later
            log.warning("could not mark %s published (%s); it will be published again", item.prompt_id, e)

    async def _publish(self, message: PromptMessage, route: bool) -> None:
        """Publish the prompt and wait for the broker's confirm: to a free worker that holds its
        checkpoint when ``route`` and there is one, else to the shared queue (front prompts to
        the front queue)."""
        publisher = self.publisher
        if publisher is None:
            raise ConnectionError("not connected to the broker")
        front = message.front
        body = aio_pika.Message(encode(message), content_type="application/json", message_id=message.prompt_id,
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        # (a front prompt is not routed: an untaken routed prompt falls back to the plain queue)
        worker = pick_worker(self.workers, message.checkpoints, WORKER_STALE_S) if route and not front else None
        if worker is not None:  # it holds the prompt's checkpoint and has a free slot
            self.workers[worker.worker_id] = worker.model_copy(update={"running": [*worker.running, message.prompt_id]})
            try:
                await publisher.default_exchange.publish(
                    body, routing_key=self.topology.worker_queue(worker.worker_id), mandatory=True, timeout=10)
                return
            except aio_pika.exceptions.DeliveryError:  # its queue is gone: any worker then
                pass
        queue = self.topology.front_prompts if front else self.topology.prompts
        await publisher.default_exchange.publish(body, routing_key=queue, mandatory=True, timeout=10)

    async def _republish_unpublished(self) -> None:
        """Every few seconds: publish again the pending jobs whose frontend (any) stored them
        and died before the broker confirmed them."""
        loop = self.loop

        def publish(item: QueueItem) -> None:  # (from the store's thread)
            asyncio.run_coroutine_threadsafe(self._publish(prompt_message(item), route=False), loop).result(30)

        while True:
            await asyncio.sleep(max(0.5, REPUBLISH_AFTER_S / 4))
            try:
                done = await asyncio.to_thread(self.store.republish_unpublished,
                                               time.time() - REPUBLISH_AFTER_S, publish)
            except Exception as e:  # noqa: BLE001 - the next round tries again
                log.warning("could not look for unpublished jobs: %s", e)
                continue
            if done:
                log.warning("published again %d job(s) whose frontend died before publishing: %s",
                            len(done), ", ".join(done))

    def control(self, action: str, prompt_id: str | None, **options: bool) -> None:
        """Broadcast interrupt / cancel / free to every worker (from any thread; not waited for)."""
        async def send() -> None:
            if self.publisher is None:
                log.warning("%s of %s not sent: the broker is unavailable", action, prompt_id or "all prompts")
                return
            await self.control_exchange.publish(
                aio_pika.Message(encode(ControlMessage(action=action, prompt_id=prompt_id, **options))),
                routing_key="")

        asyncio.run_coroutine_threadsafe(send(), self.loop)

    # ---- incoming ----
    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        try:
            await self._relay(message)
        finally:
            try:
                await message.ack()
            except Exception:  # noqa: BLE001 - the connection went: delivered again, dropped by number
                pass

    async def _relay(self, message: AbstractIncomingMessage) -> None:
        try:
            msg = decode(message.body)
        except BadMessage as e:
            log.warning("ignored an event message: %s", e.reason)
            return
        if not isinstance(msg, (EventMessage, ResultMessage)):
            return
        if msg.seq <= self.last_seq.get(msg.worker_id, 0):
            return  # sent again after a reconnection: relayed already
        self.last_seq[msg.worker_id] = msg.seq
        if isinstance(msg, EventMessage):
            data = msg.data
            if msg.event == "preview_image":
                data = dict(data, image=base64.b64decode(data.get("image_b64", "")))
                data.pop("image_b64", None)
            self.engine.send(msg.event, data, msg.client_id)
        elif isinstance(msg, ResultMessage):
            self.refresh_status()
            if msg.prompt_id in self.engine._futures:  # someone here waits for it (/api/v1 sync calls)
                entry = await asyncio.to_thread(self.store.history_entry, msg.prompt_id)
                if entry is not None:
                    self.engine._resolve(msg.prompt_id, entry)

    async def _on_worker(self, message: AbstractIncomingMessage) -> None:
        try:
            msg = decode(message.body)
        except BadMessage:
            return
        if isinstance(msg, WorkerMessage):
            if msg.state == "gone":
                self.workers.pop(msg.worker_id, None)
            else:
                self.workers[msg.worker_id] = msg

    # ---- status ----
    def refresh_status(self) -> None:
        """Count the cluster's queued jobs again and send ``status`` (from any thread; one
        count at a time, a change during it counts again)."""
        if self.loop is None:
            return
        self.loop.call_soon_threadsafe(self._refresh)

    def _refresh(self) -> None:
        if self._refreshing:
            self._again = True
            return
        self._refreshing, self._again = True, False
        self.loop.create_task(self._count())

    async def _count(self) -> None:
        try:
            self.engine.queue.cached_remaining = await asyncio.to_thread(self.store.remaining)
            Engine._status(self.engine)
        except Exception as e:  # noqa: BLE001 - the next change counts again
            log.warning("could not count the queue: %s", e)
        finally:
            self._refreshing = False
            if self._again:
                self._refresh()

    def health(self) -> dict:
        now = time.time()
        live = {k: w for k, w in self.workers.items() if now - w.at < WORKER_STALE_S}
        return {"role": "frontend", "frontend_id": self.frontend_id,
                "broker": "connected" if self.connected else "disconnected",
                "workers": {k: {"running": w.running, "checkpoints": w.checkpoints, "state": w.state}
                            for k, w in live.items()}}
