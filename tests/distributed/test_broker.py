"""The broker topology on the local RabbitMQ."""
import uuid

import aio_pika
import pytest

from _cluster import AMQP_URI
from comfyui.distributed.broker import Topology, connect


async def test_processes_that_disagree_on_the_delivery_limit_are_told_why():
    name = f"comfyui-test-{uuid.uuid4().hex[:8]}"
    first = await connect(AMQP_URI, Topology(name, 3), "test")
    try:
        with pytest.raises(RuntimeError, match="--distributed-delivery-limit must be the same"):
            await connect(AMQP_URI, Topology(name, 5), "test")
        again = await connect(AMQP_URI, Topology(name, 3), "test")  # the same settings: fine
        await again.close()
    finally:
        channel = await first.channel()
        for queue in ("prompts", "dead", "dead.report"):
            await channel.queue_delete(f"{name}.{queue}")
        for exchange in ("dead", "events", "control", "workers"):
            await channel.exchange_delete(f"{name}.{exchange}")
        await first.close()


async def test_an_unroutable_prompt_is_refused_not_lost():
    """The frontends publish with confirms and on_return_raises: a prompt whose queue is gone
    raises instead of vanishing (the client then gets 503)."""
    connection = await aio_pika.connect(AMQP_URI)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        with pytest.raises(aio_pika.exceptions.DeliveryError):
            await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=f"nowhere-{uuid.uuid4().hex}",
                                                   mandatory=True)
    finally:
        await connection.close()
