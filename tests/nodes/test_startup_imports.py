"""Loading the built-in nodes (what the server does at start-up) must not import torch.

torch / numpy / comfyui.models / comfyui.sampling load when a node runs (the built-in node
modules bind them through ``comfyui.nodes.builtin._lazy``). Runs in a fresh interpreter, since
the test process itself has usually imported torch already.
"""
from __future__ import annotations

import json
import subprocess
import sys

BUILTIN_NODE_COUNT = 314  # every built-in node (a pack that adds nodes adds to it)
API_NODE_COUNT = 22  # comfyui.api_nodes: their own registry group (--disable-api-nodes leaves them out)

CHECK = (
    "import json, sys\n"
    "from comfyui.nodes.registry import NodeRegistry\n"
    "r = NodeRegistry.with_builtins()\n"
    "r.object_info()\n"
    "print(json.dumps({'nodes': len(r.nodes), 'torch': 'torch' in sys.modules,\n"
    "                  'numpy': 'numpy' in sys.modules,\n"
    "                  'models': sorted(m for m in sys.modules if m.startswith('comfyui.models')),\n"
    "                  'sampling': sorted(m for m in sys.modules if m.startswith('comfyui.sampling')\n"
    "                                     and m != 'comfyui.sampling.names'\n"
    "                                     and m != 'comfyui.sampling')}))\n"
)


def _run_check() -> dict:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_builtins_load_without_torch():
    result = _run_check()
    assert result["nodes"] == BUILTIN_NODE_COUNT + API_NODE_COUNT
    assert result["torch"] is False
    assert result["numpy"] is False
    assert result["models"] == []
    assert result["sampling"] == []


def test_lazy_module_loads_on_use():
    from comfyui.nodes.builtin import sampling
    from comfyui.sampling import names, samplers, schedulers

    assert samplers.SAMPLER_NAMES is names.SAMPLER_NAMES
    assert schedulers.SCHEDULER_NAMES is names.SCHEDULER_NAMES
    assert sampling.KSampler.INPUT_TYPES()["required"]["sampler_name"][0] is samplers.SAMPLER_NAMES
    assert sampling.smp.SAMPLER_NAMES is samplers.SAMPLER_NAMES
    assert sampling.torch.zeros(2).shape == (2,)
