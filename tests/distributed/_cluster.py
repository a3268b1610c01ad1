"""A real cluster for the tests and bench/cluster.py: ``comfyui-worker`` and
``comfyui --distributed-queue-frontend`` processes on the local RabbitMQ and a PostgreSQL
database, each in its own workspace with a small node pack."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "jobs"))

from _proc import ServerProcess, wait_until  # noqa: E402

AMQP_URI = os.environ.get("COMFYUI_TEST_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")

NODE_PACK = textwrap.dedent('''
    import os
    import signal
    import time

    from comfyui.engine.progress import ProgressBar, throw_if_interrupted


    class ClusterStep:
        """``steps`` steps of ``seconds`` each, with progress; passes ``value`` through and
        counts its runs in output/runs/<value> (a line per run, with the worker's pid)."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("STRING", {"default": ""}),
                                 "steps": ("INT", {"default": 1, "min": 1, "max": 1000}),
                                 "seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 60.0})},
                    "optional": {"model": ("MODEL",)}}

        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"
        CATEGORY = "testing"

        def run(self, value, steps, seconds, model=None):
            runs = os.path.join(os.environ["CLUSTER_RUNS_DIR"], value)
            with open(runs, "a") as f:
                f.write(f"{os.getpid()}\\n")
            bar = ProgressBar(steps)
            for _ in range(steps):
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    throw_if_interrupted()
                    time.sleep(0.005)
                bar.update(1)
            return (value,)

        @classmethod
        def IS_CHANGED(cls, **kwargs):
            return float("nan")  # never cached: every prompt runs


    class CrashWorker:
        """Kills the process that runs it (a prompt that takes its worker down every time)."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("STRING", {"default": ""})}}

        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"
        CATEGORY = "testing"

        def run(self, value):
            os.kill(os.getpid(), signal.SIGKILL)


    NODE_CLASS_MAPPINGS = {"ClusterStep": ClusterStep, "CrashWorker": CrashWorker}
''')


def step_prompt(value: str, steps: int = 3, seconds: float = 0.05) -> dict:
    return {"1": {"class_type": "ClusterStep", "inputs": {"value": value, "steps": steps, "seconds": seconds}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def checkpoint_prompt(value: str, ckpt_name: str) -> dict:
    return {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
            "2": {"class_type": "ClusterStep", "inputs": {"value": value, "steps": 1, "seconds": 0.0,
                                                          "model": ["1", 0]}},
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}


def crash_prompt(value: str) -> dict:
    return {"1": {"class_type": "CrashWorker", "inputs": {"value": value}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def make_workspace(base: str) -> str:
    pack = os.path.join(base, "custom_nodes", "cluster_test_pack")
    os.makedirs(pack, exist_ok=True)
    with open(os.path.join(pack, "__init__.py"), "w") as f:
        f.write(NODE_PACK)
    for sub in ("input", "output", "temp", "user", "models", "runs"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    return base


class Cluster:
    """Frontends and workers of one cluster (its own queue names) on one database."""

    def __init__(self, base: str, database_url: str, *, delivery_limit: int = 3, name: str | None = None,
                 amqp_uri: str = AMQP_URI):
        self.amqp_uri = amqp_uri
        self.base = make_workspace(base)
        self.database_url = database_url
        self.name = name or f"comfyui-test-{uuid.uuid4().hex[:8]}"
        self.delivery_limit = delivery_limit
        self.runs_dir = os.path.join(base, "runs")
        os.environ["CLUSTER_RUNS_DIR"] = self.runs_dir  # (inherited by the processes)
        self.frontends: list[ServerProcess] = []
        self.workers: list[WorkerProcess] = []

    def flags(self) -> list[str]:
        return ["--distributed-queue-connection-uri", self.amqp_uri, "--distributed-queue-name", self.name,
                "--distributed-delivery-limit", str(self.delivery_limit)]

    def frontend(self) -> ServerProcess:
        server = ServerProcess(self.base, self.database_url, "--distributed-queue-frontend", *self.flags())
        self.frontends.append(server)
        return server

    def worker(self, *args: str) -> "WorkerProcess":
        worker = WorkerProcess(self, len(self.workers), *args)
        self.workers.append(worker)
        return worker

    def runs(self, value: str) -> list[int]:
        """The pids that ran ClusterStep with this value, once a line per run."""
        try:
            with open(os.path.join(self.runs_dir, value)) as f:
                return [int(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        for proc in self.workers + self.frontends:
            proc.kill()

    def delete_broker_objects(self) -> None:
        """Drop this cluster's durable queues and exchanges from the shared broker."""
        import asyncio

        import aio_pika

        async def drop() -> None:
            connection = await aio_pika.connect(AMQP_URI)
            channel = await connection.channel()
            for queue in ("prompts", "prompts.front", "dead", "dead.report"):
                await channel.queue_delete(f"{self.name}.{queue}")
            for exchange in ("dead", "events", "control", "workers"):
                await channel.exchange_delete(f"{self.name}.{exchange}")
            await connection.close()

        asyncio.run(drop())


class BrokerProxy:
    """A TCP proxy to RabbitMQ on this test's event loop: ``drop()`` cuts every connection
    through it (both ends reset) and refuses new ones for a while, as a network fault would."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5672)):
        self.target = target
        self.links: set = set()
        self.refuse_until = 0.0
        self.drops = 0

    async def start(self) -> "BrokerProxy":
        import asyncio

        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def uri(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    async def _link(self, reader, writer) -> None:
        import asyncio
        import time

        if time.monotonic() < self.refuse_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self.links.add(link)

        async def pipe(src, dst) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links.discard(link)

    def drop(self, refuse_for: float = 1.0) -> None:
        import time

        self.drops += 1
        self.refuse_until = time.monotonic() + refuse_for
        for client, upstream in list(self.links):
            client.transport.abort()
            upstream.transport.abort()

    async def close(self) -> None:
        self.drop(0)
        self.server.close()


class WorkerProcess:
    def __init__(self, cluster: Cluster, index: int, *args: str):
        self.cluster, self.index, self.args = cluster, index, list(args)
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(cluster.base, f"worker-{index}.log")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "comfyui.distributed.worker", "--base-directory", self.cluster.base,
                "--database-url", self.cluster.database_url, "--logging-level",
                os.environ.get("CLUSTER_WORKER_LOG_LEVEL", "INFO"),
                *self.cluster.flags(), *self.args]

    def start(self, wait: bool = True, timeout: float = 90) -> "WorkerProcess":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        def consuming() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            return "consuming" in self.log_tail(100000)

        wait_until(consuming, timeout, 0.1, f"worker {self.index} to consume")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def wait_ready(server: ServerProcess, timeout: float = 30) -> None:
    client = server.client(timeout=5)
    try:
        wait_until(lambda: client.get("/ready").status == 200, timeout, 0.1, "the frontend's broker connection")
    finally:
        client.close()

