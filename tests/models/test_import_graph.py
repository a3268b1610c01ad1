"""The models layer's import structure: no import circles, shared modules below the families,
and every module importable on its own."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import comfyui.models
from comfyui.models import registry

MODELS_DIR = Path(comfyui.models.__file__).parent
# what sits above the shared layer: the table and the loaders (model files, model patches)
TOP = {"comfyui.models.registry", "comfyui.models.sd", "comfyui.models.model_patch"}
# built on one family's network (SD ControlNet / T2I adapters, GLIGEN): may import that family
ADD_ONS = {"comfyui.models.controlnet", "comfyui.models.gligen"}
# the ControlNet package's protocol module, which every family's ControlNet builds on
SHARED_IN_ADD_ONS = {"comfyui.models.controlnet.base"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in MODELS_DIR.rglob("*.py"):
        parts = path.relative_to(MODELS_DIR.parent.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _import_graph() -> dict[str, set[str]]:
    """module -> the comfyui.models modules it imports (module level or inside functions)."""
    mods = _modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                dep = owner(t)
                if dep and dep != mod and dep.startswith("comfyui.models"):
                    deps.add(dep)
        graph[mod] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _family_packages() -> set[str]:
    return {f.model_class.__module__.rsplit(".", 1)[0] for f in registry.FAMILIES}


def test_no_import_circles():
    assert _cycles(_import_graph()) == []


def test_graph_sees_a_circle():
    # the checker itself: a two-module circle is reported
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_shared_modules_import_no_family():
    graph = _import_graph()
    families = _family_packages()
    assert "comfyui.models.stable_diffusion" in families

    def in_family(mod: str) -> bool:
        return any(mod == f or mod.startswith(f + ".") for f in families)

    def add_on(mod: str) -> bool:  # an add-on package's modules, except its shared base
        return mod not in SHARED_IN_ADD_ONS and any(mod == a or mod.startswith(a + ".") for a in ADD_ONS)

    bad = {m: sorted(d for d in deps if in_family(d) or d in TOP)
           for m, deps in graph.items() if not in_family(m) and m not in TOP and not add_on(m)}
    assert {m: d for m, d in bad.items() if d} == {}
    for fam in families:  # a family package imports shared modules only
        for m, deps in graph.items():
            if m == fam or m.startswith(fam + "."):
                assert not {d for d in deps if d in TOP or (in_family(d) and not d.startswith(fam))}, m


def test_each_module_imports_on_its_own():
    """Every comfyui.models module imports first in an interpreter with no comfyui module
    loaded (torch stays loaded between modules, to keep this fast)."""
    script = (
        "import sys, importlib, torch\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    for m in [m for m in sys.modules if m == 'comfyui' or m.startswith('comfyui.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    names = sorted(_modules())
    proc = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
