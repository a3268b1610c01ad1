"""Inputs by URL or base64: fetched into the input folder before the prompt is validated.

Which inputs: file choices only, i.e. inputs whose node definition is a list of choices (COMBO:
``LoadImage.image``, ``LoadVideo.file``, ``LoadAudio.audio``, a custom loader's file list).
Their value is fetched when it is an ``http(s)://`` URL, an ``s3://bucket/key`` URL (with the
``api-s3`` extra; :mod:`.storage`), a ``data:<type>;base64,`` URL or
bare base64 (at least 64 characters of the base64 alphabet that are not one of the choices).
Free-text inputs are never touched, so a prompt text that happens to be a URL stays text.

Each fetched file is saved under its content's SHA-256 (``api-<hash>.<ext>``) at the top of
the input folder and the input's value becomes that name, so a repeated input is stored once
and concurrent requests never overwrite each other's files.

Checks, each a 400 with ComfyUI's ``node_errors`` shape naming the node and input: the
download answers 2xx within ``INPUT_TIMEOUT_S`` seconds (the whole transfer), is at most
``INPUT_MAX_SIZE_MB`` (a declared Content-Length is refused before reading; a body is cut off
once past it), its Content-Type fits the input (``image/*`` for image uploads, ``video/*``,
``audio/*``; ``application/octet-stream`` or none are accepted and judged by content), and an
image input must decode as an image.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import mimetypes
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..jobs.submission import PromptRejected

_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}\s*$")
MIN_BARE_BASE64 = 64
_KIND_TYPES = {"image": ("image/",), "video": ("video/", "image/gif", "image/webp"), "audio": ("audio/", "video/")}
_NEUTRAL_TYPES = ("", "application/octet-stream", "binary/octet-stream")
_EXTS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif",
         "video/mp4": ".mp4", "video/webm": ".webm", "audio/mpeg": ".mp3", "audio/wav": ".wav",
         "audio/x-wav": ".wav", "audio/flac": ".flac", "audio/ogg": ".ogg"}


class InputFetchError(Exception):
    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.message, self.details = message, details


@dataclass
class InputRef:
    node_id: str
    class_type: str
    name: str
    value: str
    kind: str  # image | video | audio | file


def _choices_and_options(spec: Any) -> tuple[list | None, dict]:
    if not isinstance(spec, (list, tuple)) or not spec:
        return None, {}
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(spec[0], list):
        return spec[0], options
    if spec[0] == "COMBO":
        return list(options.get("options") or []), options
    return None, options


def _kind(options: dict) -> str:
    for kind in ("image", "video", "audio"):
        if options.get(f"{kind}_upload"):
            return kind
    return "file"


def _is_remote(value: str, choices: list) -> bool:
    lowered = value[:8].lower()
    if lowered.startswith(("http://", "https://", "s3://")) or value.startswith("data:"):
        return True
    return len(value) >= MIN_BARE_BASE64 and value not in choices and bool(_BASE64.match(value))


def find_inputs(prompt: dict, object_info: dict) -> list[InputRef]:
    """The file-choice inputs of ``prompt`` whose values are URLs or base64."""
    found = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        info = object_info.get(node.get("class_type"))
        if info is None:
            continue
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        for name, value in node["inputs"].items():
            if not isinstance(value, str) or name not in specs:
                continue
            choices, options = _choices_and_options(specs[name])
            if choices is not None and _is_remote(value, choices):
                found.append(InputRef(str(node_id), node["class_type"], name, value, _kind(options)))
    return found


def _check_type(content_type: str, kind: str) -> None:
    if kind == "file" or content_type in _NEUTRAL_TYPES:
        return
    if not content_type.startswith(_KIND_TYPES[kind]):
        raise InputFetchError("Wrong content type", f"expected {kind} content, the answer is {content_type}")


def _decode_base64(value: str) -> tuple[bytes, str]:
    content_type = ""
    if value.startswith("data:"):
        header, _, value = value.partition(",")
        if not header.endswith(";base64"):
            raise InputFetchError("Unsupported data URL", "only base64 data URLs are accepted")
        content_type = header[5:-len(";base64")].lower()
    try:
        return base64.b64decode("".join(value.split()), validate=True), content_type
    except (binascii.Error, ValueError):
        raise InputFetchError("Invalid base64 data", "the value is neither a URL nor valid base64") from None


def _sniff_image(data: bytes) -> str:
    """The image's file extension; raises InputFetchError if it does not decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
            fmt = (img.format or "png").lower()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputFetchError("Not an image", f"the data does not decode as an image ({e})") from None
    return ".jpg" if fmt == "jpeg" else f".{fmt}"


class InputFetcher:
    def __init__(self, session: aiohttp.ClientSession, input_dir, *, max_bytes: int, timeout_s: float, s3=None):
        self.session = session
        self.input_dir = input_dir  # a callable: the engine's input folder now
        self.max_bytes, self.timeout_s = max_bytes, timeout_s
        self.s3 = s3  # a callable: the S3Storage

    async def download_s3(self, url: str, kind: str) -> tuple[bytes, str]:
        storage = self.s3()
        try:
            storage.check_available()
        except PromptRejected as e:
            raise InputFetchError("S3 is not available", e.error["details"]) from None
        try:
            async with asyncio.timeout(self.timeout_s):
                data, content_type = await storage.download(url, self.max_bytes)
        except TimeoutError:
            raise InputFetchError("Download timed out", f"{url} took more than {self.timeout_s:g} s") from None
        except ValueError as e:
            raise InputFetchError("Input too large", str(e)) from None
        except Exception as e:  # noqa: BLE001 - botocore's errors: missing bucket/key, access denied
            raise InputFetchError("Download failed", f"{url}: {type(e).__name__}: {e}") from None
        _check_type(content_type, kind)
        return data, _EXTS.get(content_type) or os.path.splitext(url)[1].lower()

    async def download(self, url: str, kind: str) -> tuple[bytes, str]:
        limit = self.max_bytes
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.session.get(url, allow_redirects=True) as resp:
                    if not 200 <= resp.status < 300:
                        raise InputFetchError("Download failed", f"{url} answered HTTP {resp.status}")
                    content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                    _check_type(content_type, kind)
                    if resp.content_length is not None and resp.content_length > limit:
                        raise InputFetchError("Input too large", f"{resp.content_length} bytes > {limit} bytes")
                    chunks, size = [], 0
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if size > limit:
                            raise InputFetchError("Input too large", f"more than {limit} bytes")
                        chunks.append(chunk)
        except TimeoutError:
            raise InputFetchError("Download timed out", f"{url} took more than {self.timeout_s:g} s") from None
        except aiohttp.ClientError as e:
            raise InputFetchError("Download failed", f"{url}: {type(e).__name__}: {e}") from None
        ext = _EXTS.get(content_type) or os.path.splitext(urlsplit(url).path)[1].lower()
        return b"".join(chunks), ext

    async def fetch(self, ref: InputRef) -> str:
        """Fetch one input; -> the file name the input now names."""
        if ref.value[:8].lower().startswith(("http://", "https://")):
            data, ext = await self.download(ref.value, ref.kind)
        elif ref.value.startswith("s3://"):
            data, ext = await self.download_s3(ref.value, ref.kind)
        else:
            if len(ref.value) > self.max_bytes * 4 // 3 + 64:
                raise InputFetchError("Input too large", f"more than {self.max_bytes} bytes")
            data, content_type = _decode_base64(ref.value)
            _check_type(content_type, ref.kind)
            ext = _EXTS.get(content_type) or mimetypes.guess_extension(content_type or "") or ""
        return await asyncio.to_thread(self._store, data, ext, ref.kind)

    def _store(self, data: bytes, ext: str, kind: str) -> str:
        if kind == "image":
            ext = _sniff_image(data)
        name = f"api-{hashlib.sha256(data).hexdigest()[:32]}{ext or '.bin'}"
        folder = self.input_dir()
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.{id(data)}.part"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return name

    async def resolve(self, prompt: dict, object_info: dict) -> int:
        """Fetch every URL/base64 input of ``prompt`` (its nodes' ``inputs`` dicts are
        replaced, not mutated); -> how many. Raises PromptRejected (400) naming each failure."""
        refs = find_inputs(prompt, object_info)
        if not refs:
            return 0
        results = await asyncio.gather(*(self.fetch(ref) for ref in refs), return_exceptions=True)
        node_errors: dict[str, Any] = {}
        for ref, result in zip(refs, results):
            if isinstance(result, BaseException):
                if not isinstance(result, InputFetchError):
                    raise result
                entry = node_errors.setdefault(ref.node_id, {"errors": [], "dependent_outputs": [],
                                                             "class_type": ref.class_type})
                entry["errors"].append({"type": "input_fetch_failed", "message": result.message,
                                        "details": f"{ref.name}: {result.details}",
                                        "extra_info": {"input_name": ref.name}})
                continue
            node = prompt[ref.node_id]
            prompt[ref.node_id] = {**node, "inputs": {**node["inputs"], ref.name: result}}
        if node_errors:
            first = next(iter(node_errors.values()))["errors"][0]
            raise PromptRejected({"type": "input_fetch_failed", "message": "An input could not be fetched",
                                  "details": first["details"], "extra_info": {}}, node_errors)
        return len(refs)
