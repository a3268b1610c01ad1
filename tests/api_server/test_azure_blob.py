"""Azure Blob upload (``azureBlobUpload``, comfyui-api's key) against Azurite on loopback.

Azurite comes from npm: ``AZURITE_BIN``, else ``azurite-blob`` on PATH, else the test installs
it once with npm into ``~/.cache/comfyui-tests/azurite`` (about 15 s)."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time

import pytest

from api_helpers import decode_image, image_prompt

AZURITE_VERSION = "3.35.0"

# Azurite's documented development account (public; not a secret)
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _npm_azurite() -> str:
    prefix = os.path.join(os.path.expanduser("~"), ".cache", "comfyui-tests", "azurite")
    binary = os.path.join(prefix, "node_modules", ".bin", "azurite-blob")
    if not os.path.exists(binary):
        subprocess.run(["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund", "--silent",
                        f"azurite@{AZURITE_VERSION}"], check=True, timeout=300)
    return binary


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    binary = os.environ.get("AZURITE_BIN") or shutil.which("azurite-blob") or _npm_azurite()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--silent",
                             "--skipApiVersionCheck", "--location", str(tmp_path_factory.mktemp("azurite"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("Azurite did not start")
            time.sleep(0.1)
    yield (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
           f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def container(azurite, monkeypatch):
    from azure.storage.blob import BlobServiceClient

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    service = BlobServiceClient.from_connection_string(azurite)
    client = service.create_container(f"outputs-{time.monotonic_ns()}")
    return client


async def test_sync_upload_answers_blob_urls(api, container):
    status, out = await api.post({"id": "az", "prompt": image_prompt(0x00FF00, batch=2),
                                  "convert_output": {"format": "webp", "options": {"lossless": True}},
                                  "azureBlobUpload": {"container": container.container_name, "blobPrefix": "run/7/"}})
    assert status == 200, out
    names = ["run/7/az_00001_.webp", "run/7/az_00002_.webp"]
    assert out["images"] == [f"{container.url}/{n}" for n in names]
    assert sorted(b.name for b in container.list_blobs()) == names
    blob = container.get_blob_client(names[0])
    assert blob.get_blob_properties().content_settings.content_type == "image/webp"
    import base64

    img = decode_image(base64.b64encode(blob.download_blob().readall()).decode())
    assert img.format == "WEBP" and img.getpixel((0, 0))[:3] == (0, 255, 0)


async def test_async_upload_answers_202_then_the_blobs_appear(api, container):
    status, out = await api.post({"id": "azasync", "prompt": image_prompt(),
                                  "azureBlobUpload": {"container": container.container_name, "async": True}})
    assert status == 202 and out["status"] == "ok"
    for _ in range(200):
        if [b.name for b in container.list_blobs()]:
            break
        await asyncio.sleep(0.05)
    assert [b.name for b in container.list_blobs()] == ["azasync_00001_.png"]


async def test_missing_container_is_a_502_and_unconfigured_a_400(api, azurite, monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    status, out = await api.post({"id": "nocont", "prompt": image_prompt(),
                                  "azureBlobUpload": {"container": "does-not-exist"}})
    assert status == 502 and out["error"]["type"] == "upload_failed"
    assert "does-not-exist" in out["error"]["details"]
    bad, body = await api.post({"prompt": image_prompt(), "azureBlobUpload": {"blobPrefix": "x"}})
    assert bad == 400 and "container" in body["error"]["details"]


async def test_unconfigured_server_refuses_azure_uploads(api, monkeypatch):
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT", raising=False)
    status, out = await api.post({"prompt": image_prompt(), "azureBlobUpload": {"container": "c"}})
    assert status == 400 and "AZURE_STORAGE_CONNECTION_STRING" in out["error"]["details"]
