"""``comfyui --workflows`` end to end, in a subprocess, on built-in nodes that need no model."""
import asyncio
import io
import json
import os
import pathlib
import pty
import shutil
import subprocess
import sys
import textwrap

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from comfyui.cli.workflows import TerminalProgress, iter_json_objects, load_sources

FIXTURES = pathlib.Path(__file__).parents[1] / "workflows" / "fixtures"

API_PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 16, "batch_size": 2, "color": 0xFF0000}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "batch"}},
    "3": {"class_type": "PrimitiveString", "inputs": {"value": "plain"}},
    "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
}

BOOM_NODE = textwrap.dedent('''
    class Boom:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"text": ("STRING", {"default": "x"})}}
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True
        CATEGORY = "test"

        def run(self, text):
            print("a node printing to stdout must not corrupt the JSON lines")
            raise ValueError("boom: " + text)

    NODE_CLASS_MAPPINGS = {"Boom": Boom}
''')


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI_")}


def run_cli(workspace, *args, stdin=None, terminal=False):
    """Run ``comfyui --workflows ...``; -> (returncode, stdout JSON lines, stderr text).
    ``terminal=True`` puts stderr on a pseudo-terminal."""
    cmd = [sys.executable, "-m", "comfyui", "--base-directory", str(workspace), "--workflows", *args]
    if not terminal:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, cwd=workspace, env=clean_env(), timeout=120)
        return proc.returncode, parse_lines(proc.stdout), proc.stderr.decode(errors="replace")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave, cwd=workspace,
                                env=clean_env())
        os.close(slave)
        slave = None
        proc.stdin.write(stdin or b"")
        proc.stdin.close()
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        stdout = proc.stdout.read()
        code = proc.wait(60)
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    return code, parse_lines(stdout), b"".join(chunks).decode(errors="replace")


def parse_lines(stdout):
    return [json.loads(line) for line in stdout.decode().splitlines()]


@pytest.fixture
def ws(workspace):
    (workspace / "custom_nodes").mkdir(exist_ok=True)
    (workspace / "custom_nodes" / "boom.py").write_text(BOOM_NODE)
    (workspace / "api.json").write_text(json.dumps(API_PROMPT))
    shutil.copy(FIXTURES / "builtin_ui_0.4.json", workspace / "ui.json")
    return workspace


def test_files_png_and_failures(ws):
    (ws / "invalid.json").write_text(json.dumps({
        "1": {"class_type": "EmptyImage", "inputs": {"width": -5, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}))
    (ws / "boom.json").write_text(json.dumps({"1": {"class_type": "Boom", "inputs": {"text": "bang"}}}))
    (ws / "garbage.json").write_text("{not json")
    code, lines, stderr = run_cli(ws, "api.json", "ui.json", "invalid.json", "boom.json", "garbage.json", "missing.json")
    assert code == 1, stderr[-3000:]
    assert len(lines) == 6, lines
    api_out, ui_out, invalid, boom, garbage, missing = lines

    # API prompt: absolute paths of real files
    images = api_out["2"]["images"]
    assert len(images) == 2
    for image in images:
        path = pathlib.Path(image["abs_path"])
        assert path.is_absolute() and path.parent == ws / "output" and path.is_file()
    assert api_out["4"] == {"text": ["plain"]}
    with Image.open(images[0]["abs_path"]) as im:
        assert im.size == (32, 16) and im.convert("RGB").getpixel((0, 0)) == (255, 0, 0)

    # UI workflow: converted (primitive, reroute, bypass, muted node), saved with its workflow
    ui_image = pathlib.Path(ui_out["3"]["images"][0]["abs_path"])
    assert ui_image.parent == ws / "output" / "cli" and ui_out["3"]["images"][0]["subfolder"] == "cli"
    assert ui_out["7"] == {"text": ["Hello, world"]}
    assert set(ui_out) == {"3", "7"}  # the muted PreviewAny did not run
    with Image.open(ui_image) as im:
        assert im.size == (64, 32)
        assert im.convert("RGB").getpixel((5, 5)) == (255, 255, 255)  # inverted once, not twice
        assert json.loads(im.text["workflow"])["nodes"]  # the UI workflow rides along
        assert json.loads(im.text["prompt"])["5"]["inputs"]["delimiter"] == ", "

    # failures: one line each explaining why
    assert invalid["workflow"] == "invalid.json" and invalid["error"]["type"] == "prompt_outputs_failed_validation"
    assert "1" in invalid["node_errors"]
    assert boom["error"]["type"] == "execution_error" and "boom: bang" in boom["error"]["message"]
    assert boom["error"]["extra_info"]["node_id"] == "1"
    assert garbage["error"]["type"] == "invalid_workflow_file" and garbage["workflow"] == "garbage.json"
    assert missing["error"]["type"] == "invalid_workflow_file"
    assert "must not corrupt" in stderr and "running workflow" in stderr  # logs and prints on stderr
    assert "\r" not in stderr  # no progress bar when stderr is not a terminal


def test_stdin_and_png_sources(ws):
    # one API prompt and one UI workflow concatenated on stdin
    stdin = json.dumps(API_PROMPT) + "\n" + (ws / "ui.json").read_text()
    # a PNG with both chunks (the API "prompt" wins) and one with only a UI "workflow" chunk
    api_variant = json.loads(json.dumps(API_PROMPT))
    api_variant["3"]["inputs"]["value"] = "from the prompt chunk"
    info = PngInfo()
    info.add_text("prompt", json.dumps(api_variant))
    info.add_text("workflow", (ws / "ui.json").read_text())
    Image.new("RGB", (4, 4)).save(ws / "both.png", pnginfo=info)
    info = PngInfo()
    info.add_text("workflow", (ws / "ui.json").read_text())
    Image.new("RGB", (4, 4)).save(ws / "workflow_only.png", pnginfo=info)
    Image.new("RGB", (4, 4)).save(ws / "bare.png")

    # stderr on a terminal this time: a progress bar is drawn there, stdout stays pure JSON
    code, lines, terminal = run_cli(ws, "-", "both.png", "workflow_only.png", "bare.png", stdin=stdin.encode(),
                                    terminal=True)
    assert code == 1, terminal[-3000:]
    assert "\r" in terminal and "both.png [" in terminal and "-#1 [" in terminal, terminal[-3000:]
    assert len(lines) == 5
    stdin_api, stdin_ui, both, workflow_only, bare = lines
    assert stdin_api["4"] == {"text": ["plain"]}
    assert stdin_ui["7"] == {"text": ["Hello, world"]}
    assert both["4"] == {"text": ["from the prompt chunk"]}
    assert workflow_only["7"] == {"text": ["Hello, world"]}
    assert bare["error"]["type"] == "invalid_workflow_file" and "no 'prompt' or 'workflow'" in bare["error"]["message"]
    assert pathlib.Path(both["2"]["images"][0]["abs_path"]).is_file()


def test_a_png_it_wrote_runs_again_in_process(ws):
    """run_workflows (what --workflows calls) in-process: an image written by SaveImage carries
    the prompt that made it, so it runs again."""
    from comfyui.cli.workflows import run_workflows
    from comfyui.config import load_config

    config = load_config(["--base-directory", str(ws)], env={}, discover_config_file=False)
    out = io.StringIO()
    assert asyncio.run(run_workflows(config, [str(ws / "api.json")], out)) == 0
    first = json.loads(out.getvalue())
    saved = first["2"]["images"][0]["abs_path"]
    out = io.StringIO()
    assert asyncio.run(run_workflows(config, [saved], out, show_progress=False)) == 0
    again = json.loads(out.getvalue())
    assert again["4"] == {"text": ["plain"]}
    assert again["2"]["images"][0]["abs_path"] != saved and pathlib.Path(again["2"]["images"][0]["abs_path"]).is_file()


def test_loading_sources_in_process(tmp_path):
    assert list(iter_json_objects(' {"a": 1}\n{"b": 2}[3] ')) == [{"a": 1}, {"b": 2}, [3]]
    (tmp_path / "two.json").write_text('{"a": 1} {"b": 2}')
    items = list(load_sources([str(tmp_path / "two.json")]))
    assert [i.source.rsplit("#", 1)[1] for i in items] == ["1", "2"]
    assert [i.prompt for i in items] == [{"a": 1}, {"b": 2}]


def test_terminal_progress_rendering():
    bar = TerminalProgress(io.StringIO(), total_nodes=4, title="wf.json")
    bar.on_event("execution_cached", {"nodes": ["1"]})
    bar.on_event("executing", {"node": "2"})
    bar.on_event("progress", {"value": 5, "max": 20, "node": "2"})
    bar.draw(force=True)
    line = bar.stream.getvalue().split("\r")[-1]
    assert line.startswith("wf.json [######") and "1/4 node 2 5/20" in line
    bar.on_event("executed", {"node": "2"})
    bar.draw(force=True)
    assert "2/4" in bar.stream.getvalue().split("\r")[-1]
