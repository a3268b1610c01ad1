"""Every flag in ``comfyui --help`` works or says it does nothing: the flags of the command
itself on real processes (--version, --quick-test-for-ci, --log-stdout, --front-end-version,
--panic-when, --create-directories), the inert ones by their start-up line, and a walk over
``--help`` that fails on a flag no code reads. Also: batch mode and the embedded client carry
the node errors of a refused prompt in their messages."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pathlib
import re
import socket
import subprocess
import sys
import textwrap

import pytest

from comfyui.config import INERT_FLAGS, build_parser, load_config, report_inert_flags

SRC = pathlib.Path(__file__).parents[2] / "src" / "comfyui"

BROKEN_PACK = "import this_module_does_not_exist_anywhere\n"
BOOM_PACK = textwrap.dedent('''
    class PanicBoom:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"text": ("STRING", {"default": "x"})}}
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True
        CATEGORY = "test"

        def run(self, text):
            raise KeyError(text)

    NODE_CLASS_MAPPINGS = {"PanicBoom": PanicBoom}
''')
INVALID = {"1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
           "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


def _env():
    return {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI_")}


def comfyui(*args, cwd, timeout=120, stdin=None):
    return subprocess.run([sys.executable, "-m", "comfyui", *args], capture_output=True, text=True, cwd=cwd,
                          env=_env(), timeout=timeout, input=stdin)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_version(tmp_path):
    from comfyui import __version__

    r = comfyui("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"comfyui {__version__}"


def test_quick_test_for_ci_loads_nodes_and_exits_without_serving(tmp_path):
    port = _free_port()
    base = tmp_path / "ws"
    r = comfyui("--quick-test-for-ci", "--port", str(port), "--base-directory", str(base), cwd=tmp_path, timeout=90)
    assert r.returncode == 0, r.stderr
    assert re.search(r"quick test passed: \d+ node types loaded", r.stderr)
    assert "To see the GUI" not in r.stdout + r.stderr
    assert not (base / "user" / "comfyui.db").exists()  # no job store opened
    # a custom node pack that cannot import fails the test, naming the pack
    (base / "custom_nodes" / "broken_pack").mkdir(parents=True)
    (base / "custom_nodes" / "broken_pack" / "__init__.py").write_text(BROKEN_PACK)
    r = comfyui("--quick-test-for-ci", "--base-directory", str(base), cwd=tmp_path, timeout=90)
    assert r.returncode == 1
    assert "broken_pack" in r.stderr and "this_module_does_not_exist_anywhere" in r.stderr


def test_log_stdout_moves_the_log(tmp_path):
    base = str(tmp_path / "ws")
    plain = comfyui("--quick-test-for-ci", "--base-directory", base, cwd=tmp_path)
    moved = comfyui("--quick-test-for-ci", "--log-stdout", "--base-directory", base, cwd=tmp_path)
    assert "quick test passed" in plain.stderr and "quick test passed" not in plain.stdout
    assert "quick test passed" in moved.stdout and "quick test passed" not in moved.stderr


def test_front_end_version_is_refused_offline_unless_installed(tmp_path):
    from importlib.metadata import version

    base = str(tmp_path / "ws")
    r = comfyui("--front-end-version", "Comfy-Org/ComfyUI_frontend@0.0.1", "--port", str(_free_port()),
                "--base-directory", base, cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    assert "does not download frontends" in r.stderr and "comfyui-frontend-package" in r.stderr
    installed = version("comfyui-frontend-package")
    ok = comfyui("--front-end-version", f"Comfy-Org/ComfyUI_frontend@{installed}", "--quick-test-for-ci",
                 "--base-directory", base, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_panic_when_ends_the_process(tmp_path):
    base = tmp_path / "ws"
    (base / "custom_nodes" / "panic_pack").mkdir(parents=True)
    (base / "custom_nodes" / "panic_pack" / "__init__.py").write_text(BOOM_PACK)
    prompt = json.dumps({"1": {"class_type": "PanicBoom", "inputs": {"text": "t"}}})
    two = prompt + "\n" + prompt
    calm = comfyui("--base-directory", str(base), "--workflows", "-", stdin=two, cwd=tmp_path)
    assert calm.returncode == 1 and len(calm.stdout.splitlines()) == 2  # both ran, both failed
    panic = comfyui("--base-directory", str(base), "--panic-when", "builtins.KeyError", "--workflows", "-",
                    stdin=two, cwd=tmp_path)
    assert panic.returncode == 1 and panic.stdout == ""  # died on the first one
    assert "--panic-when: KeyError" in panic.stderr


def test_create_directories_default_per_mode(tmp_path):
    # batch mode creates no workspace folders unless asked (the server test checks the server's)
    base = tmp_path / "ws"
    prompt = json.dumps({"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
                         "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}})
    r = comfyui("--base-directory", str(base), "--workflows", "-", stdin=prompt, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (base / "models" / "checkpoints").exists()
    r = comfyui("--base-directory", str(base), "--create-directories", "--workflows", "-", stdin=prompt, cwd=tmp_path)
    assert r.returncode == 0 and (base / "models" / "checkpoints").is_dir()
    assert load_config(["--no-create-directories"], env={}).create_directories is False


def test_batch_mode_and_embedded_client_carry_node_errors(tmp_path):
    r = comfyui("--base-directory", str(tmp_path / "ws"), "--workflows", "-", stdin=json.dumps(INVALID), cwd=tmp_path)
    assert r.returncode == 1
    line = json.loads(r.stdout.splitlines()[0])
    assert line["node_errors"]["1"]["class_type"] == "EmptyImage"
    assert "* EmptyImage 1:" in r.stderr and "Value 0 smaller than min of 1: width" in r.stderr

    from comfyui import Comfy
    from comfyui.config import Config
    from comfyui.engine.validation import PromptError

    async def embedded():
        async with Comfy(Config(base_directory=str(tmp_path / "emb"))) as client:
            with pytest.raises(PromptError) as info:
                await client.queue_prompt(INVALID)
            return str(info.value)

    text = asyncio.run(embedded())
    assert text.startswith("Prompt outputs failed validation")
    assert "* EmptyImage 1:" in text and "Value 0 smaller than min of 1: width" in text


def test_inert_flags_say_so(caplog):
    for option, reason in INERT_FLAGS.items():
        action = next(a for a in build_parser()._actions if option in a.option_strings)
        args = [option] if action.nargs == 0 else [option, "x"]
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="comfyui.config"):
            assert report_inert_flags(load_config(args, env={}, discover_config_file=False)) == [option]
        assert f"{option} has no effect here: {reason}" in caplog.text
        assert "no effect" in action.help  # --help says so too
    assert report_inert_flags(load_config([], env={}, discover_config_file=False)) == []


# Settings that no module reads by name, and why that is right.
NOT_READ_BY_NAME = {
    "help": "argparse",
    "config": "load_config reads the file",
    "cache_classic": "the default cache; turning it on turns the other --cache-* off (one group)",
}


def test_help_walk_every_flag_is_read_or_inert(tmp_path):
    """Walk ``comfyui --help``: each flag is either named in INERT_FLAGS (and so says it does
    nothing) or its setting is read somewhere outside config.py; a flag that is parsed and then
    ignored fails here."""
    r = comfyui("--help", cwd=tmp_path)
    assert r.returncode == 0
    options = sorted(set(re.findall(r"^\s+(--[a-z0-9_-]+)", r.stdout, re.M)))
    assert len(options) > 80
    parser = build_parser()
    by_option = {o: a for a in parser._actions for o in a.option_strings}
    sources = "\n".join(p.read_text(errors="replace") for p in SRC.rglob("*.py") if p.name != "config.py")
    unread = []
    for option in options:
        action = by_option[option]
        if option in INERT_FLAGS or action.dest in NOT_READ_BY_NAME or action.dest == argparse.SUPPRESS:
            continue
        if not re.search(r"\b%s\b" % re.escape(action.dest), sources):
            unread.append(option)
    assert unread == []


def test_config_file_in_use_is_named(tmp_path):
    (tmp_path / "config.yaml").write_text("preview-size: 256\n")
    r = comfyui("--quick-test-for-ci", "--base-directory", str(tmp_path / "ws"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"config file: {tmp_path / 'config.yaml'} (found in the current directory)" in r.stderr
