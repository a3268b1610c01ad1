import pytest

from comfyui.engine.engine import Engine
from comfyui.nodes.registry import NodeRegistry

from . import testnodes


@pytest.fixture
def registry():
    reg = NodeRegistry()
    reg.register_mappings(testnodes.NODE_CLASS_MAPPINGS, python_module="custom_nodes.testnodes")
    return reg


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, event, data, client_id):
        self.events.append((event, data, client_id))

    def names(self, *only):
        return [e for e, _, _ in self.events if not only or e in only]

    def of(self, name):
        return [d for e, d, _ in self.events if e == name]

    def clear(self):
        self.events.clear()


@pytest.fixture
def make_engine(registry):
    engines = []

    def make(**kwargs):
        engine = Engine(registry, **kwargs)
        recorder = Recorder()
        engine.add_listener(recorder)
        engine.start()
        engine.recorder = recorder
        engines.append(engine)
        return engine

    testnodes.CALLS.clear()
    yield make
    for engine in engines:
        engine.stop()


@pytest.fixture
def engine(make_engine):
    return make_engine()


def run(engine, prompt, timeout=20, **kwargs):
    result = engine.submit(prompt, **kwargs)
    return engine.wait(result.prompt_id).result(timeout)
