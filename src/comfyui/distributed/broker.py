"""The cluster's broker topology (RabbitMQ, AMQP 0-9-1 through aio-pika) and its connection.

Names start with ``--distributed-queue-name`` (``comfyui``):

* ``<name>.prompts``: a durable quorum queue of prompt messages. Workers consume it with
  manual acks and a prefetch of ``--worker-concurrency``; a message is acked only once its
  job is recorded in the shared store. A message whose consumer goes away unacked (a killed
  worker, a lost connection) is delivered again; after ``--distributed-delivery-limit``
  deliveries (``x-delivery-limit``) RabbitMQ dead-letters it (reason ``delivery_limit``).
* ``<name>.prompts.front``: the same, for prompts submitted with ``front: true`` (quorum
  queues have no message priorities). Workers consume it beside ``<name>.prompts``, with a
  prefetch of its own: a front prompt is taken at once by a worker, even a busy one (one
  beyond its concurrency), and its engine runs it before any prompt it has not started
  (engines run the lowest number first; front prompts have negative numbers).
* ``<name>.dead`` (fanout exchange) -> queues ``<name>.dead`` (kept for operators) and
  ``<name>.dead.report`` (workers record each dead prompt as failed). Messages that do not
  parse or validate are published there by the worker that got them, with the reason in the
  ``x-comfyui-reason`` header, and acked.
* ``<name>.worker.<worker id>``: each worker's own queue, for prompts routed to it because it
  holds their checkpoint (:mod:`.routing`); one it does not take within ``ROUTED_TTL_MS`` is
  dead-lettered into ``<name>.prompts``; the queue is deleted a minute after its worker.
* ``<name>.events`` (topic exchange, routing key = the event's name): events and results of
  running prompts, published with confirms and numbered per worker; every frontend binds a
  queue of its own (``<name>.events.<frontend id>``, kept a minute after it disconnects, so a
  reconnection loses nothing) and relays them to its clients, dropping repeats by number.
* ``<name>.control`` (fanout): interrupt / cancel, to every worker (``<name>.control.<id>``).
* ``<name>.workers`` (fanout): workers' states, to every frontend.

All queues are declared with the same arguments by every process; a cluster whose processes
disagree on the delivery limit fails to start with RabbitMQ's PRECONDITION_FAILED.
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, ExchangeType

from ..redact import redact_url

REASON_HEADER = "x-comfyui-reason"
ROUTED_TTL_MS = 2000  # a prompt routed to one worker waits this long for it, then goes to any
WORKER_QUEUE_EXPIRES_MS = 60000  # a worker's own queue goes this long after its worker
LISTENER_EXPIRES_MS = 60000  # a process's events/control queue outlives a broker outage this long
QUORUM = {"x-queue-type": "quorum"}


@dataclass
class Topology:
    name: str = "comfyui"
    delivery_limit: int = 3

    @property
    def prompts(self) -> str:
        return f"{self.name}.prompts"

    @property
    def front_prompts(self) -> str:
        return f"{self.name}.prompts.front"

    @property
    def dead(self) -> str:
        return f"{self.name}.dead"

    @property
    def dead_report(self) -> str:
        return f"{self.name}.dead.report"

    @property
    def events(self) -> str:
        return f"{self.name}.events"

    @property
    def control(self) -> str:
        return f"{self.name}.control"

    @property
    def workers(self) -> str:
        return f"{self.name}.workers"

    def worker_queue(self, worker_id: str) -> str:
        return f"{self.name}.worker.{worker_id}"

    async def declare_worker_queue(self, channel: AbstractChannel, worker_id: str) -> Any:
        """A worker's own queue (model-aware routing): what it does not take within
        ROUTED_TTL_MS is dead-lettered into the prompts queue."""
        return await channel.declare_queue(self.worker_queue(worker_id), durable=True, arguments={
            **QUORUM, "x-message-ttl": ROUTED_TTL_MS, "x-expires": WORKER_QUEUE_EXPIRES_MS,
            "x-delivery-limit": self.delivery_limit, "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.prompts, "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish"})

    async def declare_listener(self, channel: AbstractChannel, exchange: str, owner: str,
                               routing_key: str = "#") -> Any:
        """A process's own queue on a broadcast exchange: named, so that a reconnection finds
        what arrived meanwhile; deleted by the broker once unused for LISTENER_EXPIRES_MS."""
        queue = await channel.declare_queue(f"{exchange}.{owner}", durable=False, auto_delete=False,
                                            arguments={"x-expires": LISTENER_EXPIRES_MS})
        await queue.bind(exchange, routing_key=routing_key)
        return queue

    async def declare(self, channel: AbstractChannel) -> None:
        dead = await channel.declare_exchange(self.dead, ExchangeType.FANOUT, durable=True)
        for queue_name in (self.dead, self.dead_report):
            queue = await channel.declare_queue(queue_name, durable=True, arguments=QUORUM)
            await queue.bind(dead)
        for queue_name in (self.prompts, self.front_prompts):
            await channel.declare_queue(queue_name, durable=True, arguments={
                **QUORUM, "x-delivery-limit": self.delivery_limit, "x-dead-letter-exchange": self.dead,
                # dead-lettering is itself at-least-once (needs reject-publish on overflow)
                "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
        await channel.declare_exchange(self.events, ExchangeType.TOPIC, durable=True)
        await channel.declare_exchange(self.control, ExchangeType.FANOUT, durable=True)
        await channel.declare_exchange(self.workers, ExchangeType.FANOUT, durable=True)


def topology_of(config) -> Topology:
    return Topology(getattr(config, "distributed_queue_name", None) or "comfyui",
                    int(getattr(config, "distributed_delivery_limit", 3) or 3))


class Backoff:
    """Waits between reconnection attempts: 0.1 s doubling to ``cap`` s, with jitter."""

    def __init__(self, first: float = 0.1, cap: float = 5.0):
        self.first, self.cap, self.next = first, cap, first

    def reset(self) -> None:
        self.next = self.first

    async def wait(self) -> None:
        await asyncio.sleep(self.next * random.uniform(0.8, 1.2))
        self.next = min(self.next * 2, self.cap)


async def connect(uri: str, topology: Topology, name: str) -> AbstractConnection:
    """A connection with the topology declared (raises when the broker cannot be reached)."""
    connection = await aio_pika.connect(uri, client_properties={"connection_name": name}, timeout=10)
    try:
        channel = await connection.channel()
        await topology.declare(channel)
        await channel.close()
    except aio_pika.exceptions.ChannelPreconditionFailed as e:
        await connection.close()
        raise RuntimeError(f"the broker's {topology.name}.* queues were declared with other settings "
                           f"(--distributed-delivery-limit must be the same in every process): {e}") from e
    except BaseException:
        await connection.close()
        raise
    return connection


def lost(connection: AbstractConnection) -> asyncio.Future:
    """A future that resolves when the connection closes, for whatever reason (aio-pika's
    ``closed()`` resolves on ``close()`` only)."""
    future = asyncio.get_running_loop().create_future()

    def closed(*_args: Any) -> None:
        if not future.done():
            future.set_result(True)

    connection.close_callbacks.add(closed)
    if connection.is_closed:
        closed()
    return future


def describe(uri: str) -> str:
    return redact_url(uri)
