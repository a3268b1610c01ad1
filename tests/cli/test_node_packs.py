"""``comfyui node install|uninstall|list|update|disable|enable`` against a local registry
(tests/cli/local_registry.py), local git repositories and hand-built wheels; pip installs go to
a throw-away venv (``--python``), never this one."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile

import pytest

from local_registry import LocalRegistry, node_pack_files


@pytest.fixture(scope="module")
def registry():
    reg = LocalRegistry()
    reg.add("hello-pack", "1.0.0", node_pack_files("HelloNode", "1.0.0"))
    reg.add("hello-pack", "1.1.0", node_pack_files("HelloNode", "1.1.0"))
    reg.add("broken-zip", "1.0.0", {})
    reg.packs["broken-zip"]["1.0.0"] = b"not a zip"
    reg.start()
    yield reg
    reg.stop()


def run_node(*args, env_extra=None, cwd=None):
    env = dict(os.environ)
    env.pop("COMFYUI_REGISTRY_URL", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "comfyui", "node", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def listed(ws, *extra):
    return {p["name"]: p for p in json.loads(ok(run_node("-w", ws, "list", "--json", *extra)).stdout)}


def load_pack_nodes(custom_nodes):
    from comfyui.nodes.custom_nodes import load_custom_nodes
    from comfyui.nodes.registry import NodeRegistry

    reg = NodeRegistry()
    results = load_custom_nodes(reg, [custom_nodes], entry_points=False)
    assert all(r.error is None for r in results), [r.error for r in results]
    return {r.name: r.nodes for r in results if r.ok}


def test_registry_install_list_update_disable_enable_uninstall(tmp_path, registry):
    ws = str(tmp_path / "ws")
    reg = ["--registry-url", registry.url]
    proc = ok(run_node("-w", ws, *reg, "install", "hello-pack", "--version", "1.0.0"))
    assert "installed hello-pack 1.0.0" in proc.stderr and "restart the server" in proc.stderr
    pack = os.path.join(ws, "custom_nodes", "hello-pack")
    assert load_pack_nodes(os.path.join(ws, "custom_nodes")) == {"hello-pack": ["HelloNode"]}
    assert listed(ws)["hello-pack"] == {"name": "hello-pack", "source": "registry", "enabled": True,
                                        "version": "1.0.0", "id": "hello-pack", "url": None, "path": pack}
    # ComfyUI-Manager knows a registry pack by its .tracking file list (and pyproject.toml)
    assert {"__init__.py", "pyproject.toml"} <= set(open(os.path.join(pack, ".tracking")).read().split())
    text = ok(run_node("-w", ws, "list")).stdout
    assert "hello-pack" in text and "registry:hello-pack" in text and "1.0.0" in text

    again = run_node("-w", ws, *reg, "install", "hello-pack")
    assert again.returncode == 1 and "already installed" in again.stderr and "comfyui node update" in again.stderr

    ok(run_node("-w", ws, *reg, "update", "hello-pack"))
    assert listed(ws)["hello-pack"]["version"] == "1.1.0"
    assert "'1.1.0'" in open(os.path.join(pack, "__init__.py")).read()
    current = ok(run_node("-w", ws, *reg, "update", "--all"))
    assert "hello-pack is up to date (1.1.0)" in current.stderr

    ok(run_node("-w", ws, "disable", "hello-pack"))
    disabled = os.path.join(ws, "custom_nodes", ".disabled", "hello-pack")
    assert os.path.isdir(disabled) and not os.path.exists(pack)
    assert listed(ws)["hello-pack"]["enabled"] is False
    assert load_pack_nodes(os.path.join(ws, "custom_nodes")) == {}  # the loader skips .disabled/
    reinstall = run_node("-w", ws, *reg, "install", "hello-pack")
    assert reinstall.returncode == 1 and "already installed (disabled)" in reinstall.stderr
    twice = run_node("-w", ws, "disable", "hello-pack")
    assert twice.returncode == 1 and "already disabled" in twice.stderr
    ok(run_node("-w", ws, "enable", "hello-pack"))
    assert os.path.isdir(pack) and not os.path.exists(disabled)

    ok(run_node("-w", ws, "uninstall", "hello-pack"))
    assert not os.path.exists(pack)
    gone = run_node("-w", ws, "uninstall", "hello-pack")
    assert gone.returncode == 1 and "hello-pack is not installed" in gone.stderr
    for cmd in ("enable", "disable", "update"):
        proc = run_node("-w", ws, *reg, cmd, "hello-pack")
        assert proc.returncode == 1 and "not installed" in proc.stderr, cmd


def test_packs_installed_by_comfyui_manager_are_recognised(tmp_path, registry):
    ws = tmp_path / "ws"
    pack = ws / "custom_nodes" / "hello-pack"  # as ComfyUI-Manager leaves a registry pack
    pack.mkdir(parents=True)
    for name, text in node_pack_files("HelloNode", "1.0.0").items():
        (pack / name).write_text(text.replace("PACK-ID", "hello-pack"))
    (pack / ".tracking").write_text("__init__.py\npyproject.toml\n")
    got = listed(str(ws))["hello-pack"]
    assert (got["source"], got["id"], got["version"]) == ("registry", "hello-pack", "1.0.0")
    ok(run_node("-w", str(ws), "--registry-url", registry.url, "update", "hello-pack"))
    assert listed(str(ws))["hello-pack"]["version"] == "1.1.0"


def test_registry_failures_are_clear(tmp_path, registry):
    ws = str(tmp_path / "ws")
    unknown = run_node("-w", ws, "--registry-url", registry.url, "install", "no-such-pack")
    assert unknown.returncode == 1 and "has no node pack" in unknown.stderr and "404" in unknown.stderr
    version = run_node("-w", ws, "--registry-url", registry.url, "install", "hello-pack", "--version", "9.9.9")
    assert version.returncode == 1 and "404" in version.stderr
    bad_zip = run_node("-w", ws, "--registry-url", registry.url, "install", "broken-zip")
    assert bad_zip.returncode == 1 and "is not a zip file" in bad_zip.stderr
    unreachable = run_node("-w", ws, "--registry-url", "http://127.0.0.1:9", "install", "hello-pack")
    assert unreachable.returncode == 1 and "cannot reach the registry at http://127.0.0.1:9" in unreachable.stderr
    bad_name = run_node("-w", ws, "--registry-url", registry.url, "install", "../evil")
    assert bad_name.returncode == 1 and "not a valid pack name" in bad_name.stderr
    # nothing was left behind by the failures
    assert not os.path.isdir(os.path.join(ws, "custom_nodes")) or os.listdir(os.path.join(ws, "custom_nodes")) == []
    assert "Traceback" not in unknown.stderr + bad_zip.stderr + unreachable.stderr


def test_registry_url_from_environment_and_config_file(tmp_path, registry):
    ws = str(tmp_path / "ws")
    ok(run_node("-w", ws, "install", "hello-pack", env_extra={"COMFYUI_REGISTRY_URL": registry.url}))
    ok(run_node("-w", ws, "uninstall", "hello-pack"))
    config = tmp_path / "config.yaml"
    config.write_text(f"registry-url: {registry.url}\n")
    ok(run_node("-c", str(config), "-w", ws, "install", "hello-pack"))
    assert listed(ws)["hello-pack"]["version"] == "1.1.0"
    # the command line beats the environment
    wrong = run_node("-w", ws, "--registry-url", "http://127.0.0.1:9", "update", "hello-pack",
                     env_extra={"COMFYUI_REGISTRY_URL": registry.url})
    assert wrong.returncode == 1 and "127.0.0.1:9" in wrong.stderr


def git(*args, cwd=None):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def commit_pack(repo, version):
    for name, text in node_pack_files("GitNode", version).items():
        (repo / name).write_text(text)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", version, cwd=repo)
    return git("rev-parse", "--short", "HEAD", cwd=repo)


def test_git_install_update_and_failures(tmp_path):
    repo = tmp_path / "Git-Pack.git"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    first = commit_pack(repo, "1")
    ws = str(tmp_path / "ws")
    url = f"file://{repo}"
    proc = ok(run_node("-w", ws, "install", url))
    assert f"cloning {url}" in proc.stderr
    pack = os.path.join(ws, "custom_nodes", "Git-Pack")
    assert listed(ws)["Git-Pack"] == {"name": "Git-Pack", "source": "git", "enabled": True, "version": first,
                                      "id": None, "url": url, "path": pack}
    assert load_pack_nodes(os.path.join(ws, "custom_nodes")) == {"Git-Pack": ["GitNode"]}
    again = run_node("-w", ws, "install", url)
    assert again.returncode == 1 and "already installed" in again.stderr

    second = commit_pack(repo, "2")
    up = ok(run_node("-w", ws, "update", "Git-Pack"))
    assert f"updated Git-Pack {first} -> {second}" in up.stderr
    assert listed(ws)["Git-Pack"]["version"] == second and "'2'" in open(os.path.join(pack, "__init__.py")).read()
    assert "is up to date" in ok(run_node("-w", ws, "update", "Git-Pack")).stderr
    ok(run_node("-w", ws, "update", "Git-Pack", "--version", first))
    assert "'1'" in open(os.path.join(pack, "__init__.py")).read()

    missing = run_node("-w", ws, "install", f"file://{tmp_path}/nothing-here.git")
    assert missing.returncode == 1 and "cannot clone" in missing.stderr
    assert not os.path.exists(os.path.join(ws, "custom_nodes", "nothing-here"))
    bad_ref = run_node("-w", ws, "install", f"file://{repo}", "--version", "no-such-tag")
    assert bad_ref.returncode == 1  # already installed
    ok(run_node("-w", ws, "uninstall", "Git-Pack"))
    bad_ref = run_node("-w", ws, "install", url, "--version", "no-such-tag")
    assert bad_ref.returncode == 1 and "cannot check out no-such-tag" in bad_ref.stderr
    assert not os.path.exists(pack)

    hand_made = os.path.join(ws, "custom_nodes", "HandMade")
    os.makedirs(hand_made)
    assert listed(ws)["HandMade"]["source"] == "folder"
    by_hand = run_node("-w", ws, "update", "HandMade")
    assert by_hand.returncode == 1 and "update it by hand" in by_hand.stderr


def make_wheel(directory, name, version, files, entry_points=None):
    """A pure-Python wheel, written by hand (no build backend needed)."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    contents = dict(files)
    contents[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    contents[f"{dist}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if entry_points:
        contents[f"{dist}/entry_points.txt"] = "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in entry_points.items())
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    contents[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    path = os.path.join(directory, f"{name.replace('-', '_')}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        for p, text in contents.items():
            z.writestr(p, text)
    return path


@pytest.fixture
def target_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    return python, site


def test_requirements_go_to_the_target_environment_unless_no_deps(tmp_path, target_venv):
    python, site = target_venv
    wheel = make_wheel(str(tmp_path), "tinydep", "1.0", {"tinydep.py": "VALUE = 7\n"})
    reg = LocalRegistry()
    reg.add("needs-dep", "1.0.0", node_pack_files("NeedsDep", "1.0.0", requirements=f"tinydep @ file://{wheel}\n"))
    reg.start()
    try:
        ws = str(tmp_path / "ws")
        skipped = ok(run_node("-w", ws, "--registry-url", reg.url, "--python", python, "install", "needs-dep",
                              "--no-deps"))
        assert "not installing" in skipped.stderr and "--no-deps" in skipped.stderr
        assert not os.path.exists(os.path.join(site, "tinydep.py"))
        ok(run_node("-w", ws, "uninstall", "needs-dep"))
        proc = ok(run_node("-w", ws, "--registry-url", reg.url, "--python", python, "install", "needs-dep"))
        assert "installing the pack's requirements" in proc.stderr
        assert os.path.exists(os.path.join(site, "tinydep.py"))
        ok(run_node("-w", ws, "uninstall", "needs-dep"))
        reg.add("bad-dep", "1.0.0", node_pack_files("BadDep", "1.0.0", requirements=f"nodep @ file://{tmp_path}/none.whl\n"))
        bad = run_node("-w", ws, "--registry-url", reg.url, "--python", python, "install", "bad-dep")
        assert bad.returncode == 1 and "could not install its requirements.txt" in bad.stderr
    finally:
        reg.stop()


def test_pip_pack_exposing_the_entry_point(tmp_path, target_venv):
    python, site = target_venv
    ws = str(tmp_path / "ws")
    pack = make_wheel(str(tmp_path), "pip-node-pack", "2.0",
                      {"pip_node_pack/__init__.py": "NODE_CLASS_MAPPINGS = {}\n"},
                      {"comfyui.custom_nodes": {"pip_node_pack": "pip_node_pack"}})
    proc = ok(run_node("-w", ws, "--python", python, "install", "--pip", pack))
    assert "installed pip-node-pack 2.0" in proc.stderr
    assert listed(ws, "--python", python)["pip-node-pack"]["source"] == "pip"
    assert "pip-node-pack" not in listed(ws)  # this interpreter's environment is untouched
    dis = run_node("-w", ws, "--python", python, "disable", "pip-node-pack")
    assert dis.returncode == 1 and "--blacklist-custom-nodes" in dis.stderr
    ok(run_node("-w", ws, "--python", python, "uninstall", "pip-node-pack"))
    assert "pip-node-pack" not in listed(ws, "--python", python)

    plain = make_wheel(str(tmp_path), "not-a-pack", "1.0", {"not_a_pack.py": ""})
    refused = run_node("-w", ws, "--python", python, "install", f"pip:{plain}")
    assert refused.returncode == 1 and "exposes no 'comfyui.custom_nodes' entry point" in refused.stderr
    missing = run_node("-w", ws, "--python", python, "install", "--pip", str(tmp_path / "missing-1.0-py3-none-any.whl"))
    assert missing.returncode == 1 and "pip could not install" in missing.stderr
