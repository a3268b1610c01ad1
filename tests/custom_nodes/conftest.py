import importlib
import sys
import textwrap

import pytest

from comfyui.nodes.registry import NodeRegistry


@pytest.fixture
def registry():
    return NodeRegistry()


@pytest.fixture
def write_pack():
    """write_pack(dir, name, files={relpath: source}) -> path of the pack directory (or file)."""

    def write(root, name, files):
        root.mkdir(parents=True, exist_ok=True)
        if isinstance(files, str):  # single-file pack
            p = root / name
            p.write_text(textwrap.dedent(files))
            return p
        pack = root / name
        for rel, src in files.items():
            f = pack / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(textwrap.dedent(src))
        return pack

    return write


@pytest.fixture(autouse=True)
def _forget_loaded_packs():
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("custom_nodes.") or name.startswith("ep_pack"):
            del sys.modules[name]


@pytest.fixture
def site_dir(tmp_path):
    """A directory on sys.path where tests can install a distribution (dist-info + modules)."""
    d = tmp_path / "site"
    d.mkdir()
    sys.path.insert(0, str(d))
    importlib.invalidate_caches()
    yield d
    sys.path.remove(str(d))
    importlib.invalidate_caches()


@pytest.fixture
def install_dist():
    """install_dist(site_dir, dist_name, {ep_name: "module[:attr]"}, {relpath: source})."""
    return _install_dist


def _install_dist(site, dist_name, entry_points: dict[str, str], modules: dict[str, str]):
    for rel, src in modules.items():
        f = site / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(src))
    info = site / f"{dist_name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n")
    lines = ["[comfyui.custom_nodes]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    importlib.invalidate_caches()
