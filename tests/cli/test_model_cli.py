"""``comfyui model download|list`` on real processes against local servers: a Hugging Face Hub
(``HF_ENDPOINT``, tests/fake_hub.py: the HEAD/GET/redirect/header protocol
``huggingface_hub`` speaks) and plain URLs with ``Range``. Covers: each source form and the
folder it lands in, an interrupted download resumed by the next run (byte offset asked, bytes
identical), a checksum mismatch (clear error, nothing in models/), a gated repository with and
without the login token, and ``model list``."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_hub import Blob, FakeHub

MB = 1 << 20


def payload(n: int, seed: int = 1) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (n // 32) + b"x" * (n % 32)


@pytest.fixture
def hub():
    server = FakeHub()
    yield server
    server.close()


def env(tmp_path: Path, hub: FakeHub, **extra) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_", "HF_", "HUGGING"))}
    e.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_CACHE=str(tmp_path / "hf_cache"),
             HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1", **extra)
    return e


def model_cmd(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "comfyui", "model", *args, "--base-directory", str(tmp_path / "ws")]


def run(tmp_path, hub, *args, extra_env=None, timeout=120):
    return subprocess.run(model_cmd(tmp_path, *args), capture_output=True, text=True, timeout=timeout,
                          env=env(tmp_path, hub, **(extra_env or {})), cwd=tmp_path)


def models(tmp_path) -> Path:
    return tmp_path / "ws" / "models"


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def test_download_hf_repo_file_into_the_folder_of_its_type(tmp_path, hub):
    data = payload(3 * MB)
    hub.repos["Comfy-Org/flux1-schnell"] = {"flux1-schnell-fp8.safetensors": Blob(data)}
    r = run(tmp_path, hub, "download", "Comfy-Org/flux1-schnell", "flux1-schnell-fp8.safetensors",
            "--type", "checkpoints")
    assert r.returncode == 0, r.stderr
    target = models(tmp_path) / "checkpoints" / "flux1-schnell-fp8.safetensors"
    assert r.stdout.strip() == str(target)
    assert target.read_bytes() == data
    assert "100%" in r.stderr and "flux1-schnell-fp8.safetensors" in r.stderr  # the progress bar
    assert ("HEAD", "/Comfy-Org/flux1-schnell/resolve/main/flux1-schnell-fp8.safetensors", None) in hub.requests


def test_hf_forms_infer_the_folder_and_name(tmp_path, hub):
    vae = payload(MB, 2)
    lora = payload(MB, 3)
    hub.repos["Org/pack"] = {"split_files/vae/my_vae.safetensors": Blob(vae),
                             "loras/style.safetensors": Blob(lora)}
    r = run(tmp_path, hub, "download", "hf://Org/pack@main/split_files/vae/my_vae.safetensors")
    assert r.returncode == 0, r.stderr
    assert (models(tmp_path) / "vae" / "my_vae.safetensors").read_bytes() == vae
    r = run(tmp_path, hub, "download", "https://huggingface.co/Org/pack/resolve/main/loras/style.safetensors",
            "--name", "sub/renamed.safetensors")
    assert r.returncode == 0, r.stderr
    assert (models(tmp_path) / "loras" / "sub" / "renamed.safetensors").read_bytes() == lora
    # nothing tells where a bare file goes: a clear error that names --type
    hub.repos["Org/pack"]["misc.safetensors"] = Blob(lora)
    r = run(tmp_path, hub, "download", "Org/pack", "misc.safetensors")
    assert r.returncode == 1 and "pass --type" in r.stderr and "checkpoints" in r.stderr
    r = run(tmp_path, hub, "download", "Org/pack", "nope.safetensors", "--type", "vae")
    assert r.returncode == 1 and "no file nope.safetensors in Org/pack" in r.stderr
    r = run(tmp_path, hub, "download", "Org/pack", "misc.safetensors", "--type", "nonsense")
    assert r.returncode == 1 and "unknown model type 'nonsense'" in r.stderr


def test_known_model_name_gives_the_folder(tmp_path, hub):
    """A file the templates name goes to the folder the known-models table gives it."""
    data = payload(MB, 4)
    hub.repos["Comfy-Org/stable-diffusion-v1-5-archive"] = {"v1-5-pruned-emaonly-fp16.safetensors": Blob(data)}
    r = run(tmp_path, hub, "download", "Comfy-Org/stable-diffusion-v1-5-archive", "v1-5-pruned-emaonly-fp16.safetensors")
    assert r.returncode == 0, r.stderr
    assert (models(tmp_path) / "checkpoints" / "v1-5-pruned-emaonly-fp16.safetensors").read_bytes() == data


def test_gated_repo_needs_the_login_token(tmp_path, hub):
    data = payload(MB, 5)
    hub.repos["black-forest-labs/FLUX.1-dev"] = {"ae.safetensors": Blob(data)}
    hub.gated["black-forest-labs/FLUX.1-dev"] = "hf_secret_token"
    r = run(tmp_path, hub, "download", "black-forest-labs/FLUX.1-dev", "ae.safetensors", "--type", "vae")
    assert r.returncode == 1
    assert "gated repository" in r.stderr and "hf auth login" in r.stderr
    assert not (models(tmp_path) / "vae" / "ae.safetensors").exists()
    # the token `hf auth login` stores (HF_HOME/token)
    (tmp_path / "hf_home").mkdir(exist_ok=True)
    (tmp_path / "hf_home" / "token").write_text("hf_secret_token")
    r = run(tmp_path, hub, "download", "black-forest-labs/FLUX.1-dev", "ae.safetensors", "--type", "vae")
    assert r.returncode == 0, r.stderr
    assert (models(tmp_path) / "vae" / "ae.safetensors").read_bytes() == data


def test_plain_url_with_content_disposition_name(tmp_path, hub):
    data = payload(2 * MB + 17, 6)
    hub.files["dl/123"] = Blob(data, disposition="upscaler_x4.pth")
    r = run(tmp_path, hub, "download", f"{hub.url}/files/dl/123", "--type", "upscale_models", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (models(tmp_path) / "upscale_models" / "upscaler_x4.pth").read_bytes() == data
    assert "%|" not in r.stderr  # --no-progress
    assert all_files(models(tmp_path)) == ["upscale_models/upscaler_x4.pth"]
    # already there: kept, not downloaded again
    before = len(hub.requests)
    r = run(tmp_path, hub, "download", f"{hub.url}/files/dl/123", "--type", "upscale_models", "--name", "upscaler_x4.pth")
    assert r.returncode == 0 and len(hub.requests) == before


def test_civitai_model_page_resolves_to_its_download(tmp_path, hub):
    data = payload(MB, 7)
    hub.files["civitai/api/download/models/4242"] = Blob(data, disposition="styleLora_v1.safetensors")
    r = run(tmp_path, hub, "download", "https://civitai.com/models/99?modelVersionId=4242", "--type", "loras",
            extra_env={"CIVITAI_ENDPOINT": f"{hub.url}/files/civitai", "CIVITAI_API_TOKEN": "civ_token"})
    assert r.returncode == 0, r.stderr
    assert (models(tmp_path) / "loras" / "styleLora_v1.safetensors").read_bytes() == data
    # a model page without a version: its newest version, from CivitAI's API
    hub.files["civitai/api/v1/models/77"] = Blob(json.dumps({"modelVersions": [{"id": 4243}, {"id": 100}]}).encode())
    newest = payload(MB, 11)
    hub.files["civitai/api/download/models/4243"] = Blob(newest, disposition="styleLora_v2.safetensors")
    r = run(tmp_path, hub, "download", "https://civitai.com/models/77/some-style", "--type", "loras",
            extra_env={"CIVITAI_ENDPOINT": f"{hub.url}/files/civitai"})
    assert r.returncode == 0, r.stderr
    assert (models(tmp_path) / "loras" / "styleLora_v2.safetensors").read_bytes() == newest


def _wait(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _interrupt_midway(tmp_path, hub, args, partial_glob, min_size):
    """Start a download, wait until its partial file holds ``min_size`` bytes while the
    connection hangs, then Ctrl-C it."""
    proc = subprocess.Popen(model_cmd(tmp_path, *args), env=env(tmp_path, hub), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert hub.stalled.wait(60)

        def partial_size():
            return max((p.stat().st_size for p in tmp_path.glob(partial_glob)), default=0)

        assert _wait(lambda: partial_size() >= min_size), proc.stderr.read() if proc.poll() is not None else ""
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    hub.release()
    return proc.returncode, err, partial_size()


def test_interrupted_url_download_resumes(tmp_path, hub):
    data = payload(5 * MB + 123, 8)
    hub.files["big.safetensors"] = Blob(data)
    hub.stall_after = 3 * MB + 5
    args = ("download", f"{hub.url}/files/big.safetensors", "--type", "checkpoints")
    code, err, have = _interrupt_midway(tmp_path, hub, args, "ws/temp/downloads/*.part", 3 * MB)
    assert code == 130 and "run the same command again to resume" in err
    assert not (models(tmp_path) / "checkpoints" / "big.safetensors").exists()
    assert all_files(models(tmp_path)) == []  # the partial file is not in models/
    r = run(tmp_path, hub, *args)
    assert r.returncode == 0, r.stderr
    assert hub.ranges()[-1] == f"bytes={have}-"  # resumed where the first run stopped
    assert (models(tmp_path) / "checkpoints" / "big.safetensors").read_bytes() == data
    assert list((tmp_path / "ws" / "temp" / "downloads").iterdir()) == []


def test_interrupted_hf_download_resumes(tmp_path, hub):
    data = payload(12 * MB, 9)  # more than huggingface_hub's 10 MiB write chunk
    hub.repos["Org/big"] = {"big.safetensors": Blob(data)}
    hub.stall_after = 11 * MB
    args = ("download", "Org/big", "big.safetensors", "--type", "diffusion_models")
    code, err, have = _interrupt_midway(tmp_path, hub, args, "ws/temp/downloads/*.part", 10 * MB)
    assert code == 130
    assert all_files(models(tmp_path)) == []
    r = run(tmp_path, hub, *args)
    assert r.returncode == 0, r.stderr
    assert hub.ranges()[-1] == f"bytes={have}-"
    assert (models(tmp_path) / "diffusion_models" / "big.safetensors").read_bytes() == data


def test_checksum_mismatch_leaves_nothing(tmp_path, hub):
    data = payload(2 * MB, 10)
    hub.files["m.safetensors"] = Blob(data)
    wrong = "0" * 64
    r = run(tmp_path, hub, "download", f"{hub.url}/files/m.safetensors", "--type", "loras", "--sha256", wrong)
    assert r.returncode == 1
    assert f"checksum mismatch for {hub.url}/files/m.safetensors: expected sha256 {wrong}, got " \
           f"{hashlib.sha256(data).hexdigest()}" in r.stderr
    assert all_files(models(tmp_path)) == [] and list((tmp_path / "ws" / "temp" / "downloads").iterdir()) == []
    r = run(tmp_path, hub, "download", f"{hub.url}/files/m.safetensors", "--type", "loras",
            "--sha256", hashlib.sha256(data).hexdigest())
    assert r.returncode == 0, r.stderr

    # a Hugging Face file whose bytes do not match the SHA-256 the Hub stores it under
    hub.repos["Org/bad"] = {"bad.safetensors": Blob(data, claimed_sha256="ab" * 32)}
    r = run(tmp_path, hub, "download", "Org/bad", "bad.safetensors", "--type", "vae")
    assert r.returncode == 1 and f"checksum mismatch for hf://Org/bad/bad.safetensors: expected sha256 {'ab' * 32}" in r.stderr
    assert not (models(tmp_path) / "vae").exists() or all_files(models(tmp_path) / "vae") == []
    assert list((tmp_path / "ws" / "temp" / "downloads").iterdir()) == []


def test_list_shows_files_and_known_models(tmp_path, hub):
    lora = models(tmp_path) / "loras" / "a.safetensors"
    lora.parent.mkdir(parents=True)
    lora.write_bytes(b"x" * 2048)
    r = run(tmp_path, hub, "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"loras/a.safetensors\t2.0 KiB\t{lora}"]
    r = run(tmp_path, hub, "list", "--type", "checkpoints", "--known")
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("checkpoints/v1-5-pruned-emaonly-fp16.safetensors"))
    assert line.split("\t")[1:] == ["missing", "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/"
                                    "resolve/main/v1-5-pruned-emaonly-fp16.safetensors"]
    assert all(ln.startswith("checkpoints/") for ln in r.stdout.splitlines())
    r = run(tmp_path, hub, "list", "--type", "nonsense")
    assert r.returncode == 2 and "unknown model type 'nonsense'" in r.stderr
