"""File routes: ``/view``, ``/view_metadata/{folder}``, ``/upload/image``, ``/upload/mask``,
``/internal/files/{type}``, ``/internal/folder_paths`` and the model library
(``/experiment/models*``).

Path rules (shared by every file route of the server, see also ``frontend.py`` and
``routes_user.py``):

* Every path built from client input goes through :func:`comfyui.paths.safe_join` (NUL
  bytes, backslashes, absolute paths, drive letters and ``..`` segments are refused outright;
  symlinks are resolved and the result must stay inside the root).
* A :class:`~comfyui.paths.PathEscapeError` is always answered **403**
  ``{"error": "Forbidden: ..."}``; a missing or malformed parameter (no filename, an empty
  name, an unknown ``type``) is **400**; a well-formed path that does not exist is **404**.
* Client-supplied upload file names are reduced to their last path segment (``/`` and ``\\``
  both count as separators) before use; names that are empty, ``.``/``..`` or contain NUL
  bytes are refused with 400.
* Served files get ``X-Content-Type-Options: nosniff``; HTML, JavaScript, CSS and SVG files
  from ``/view`` are sent as ``application/octet-stream`` so that an uploaded page can never
  run in the server's origin.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import mimetypes
import os
import shutil
import struct
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from aiohttp import web

from comfyui import paths
from comfyui.paths import PathEscapeError, safe_join

from .context import JSONBodyError, ServerContext, add_route, error_response, json_response, parse_json_body

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- shared helpers

# MIME types ComfyUI registers (browsers refuse ES modules served with another type).
MIME_TYPES = {
    ".js": "application/javascript; charset=utf-8",
    ".mjs": "application/javascript; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".css": "text/css",
    ".html": "text/html",
    ".htm": "text/html",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".wasm": "application/wasm",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".opus": "audio/opus",
    ".m4a": "audio/mp4",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".obj": "model/obj",
    ".safetensors": "application/octet-stream",
}

# Content types that could execute in our origin when opened directly.
ACTIVE_CONTENT_TYPES = frozenset({
    "text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript",
    "application/javascript", "application/x-javascript", "text/css", "image/svg+xml",
    "application/xml", "text/xml",
})

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif")


_UMASK = os.umask(0)
os.umask(_UMASK)


def make_temp_file(directory: str | os.PathLike, prefix: str = ".tmp-") -> tuple[int, str]:
    """``mkstemp`` in ``directory`` with normal file permissions (mkstemp makes 0600); used
    to write a file atomically (write, then ``os.replace``)."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
    except OSError:
        pass
    return fd, tmp


def guess_type(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    if ext in MIME_TYPES:
        return MIME_TYPES[ext]
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def forbidden(e: Exception | str) -> web.Response:
    """The one answer for a path that tries to leave its root."""
    return error_response(f"Forbidden: {e}", 403)


def content_disposition(filename: str, inline: bool = True) -> str:
    kind = "inline" if inline else "attachment"
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace('"', "_").replace("\\", "_")
    ascii_name = "".join(c if 32 <= ord(c) < 127 else "_" for c in ascii_name)
    quoted = urllib.parse.quote(filename, safe="")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}"


def file_response(path: str | os.PathLike, *, content_type: str | None = None,
                  headers: dict | None = None, neutralize: bool = False) -> web.FileResponse:
    """A FileResponse with our MIME table; ``neutralize`` turns active content into octet-stream."""
    ctype = content_type or guess_type(os.fspath(path))
    if neutralize and ctype.split(";", 1)[0].strip().lower() in ACTIVE_CONTENT_TYPES:
        ctype = "application/octet-stream"
    h = {"Content-Type": ctype, "X-Content-Type-Options": "nosniff"}
    if headers:
        h.update(headers)
    return web.FileResponse(path, headers=h)


def clean_client_filename(name: Any) -> str | None:
    """Reduce a client-supplied file name to one safe path segment (None when unusable)."""
    if not isinstance(name, str) or "\x00" in name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        return None
    if any(ord(c) < 32 for c in name):
        return None
    return name


def clean_subfolder(sub: Any) -> str:
    """Normalise a subfolder to a relative posix path (containment is checked by safe_join)."""
    if not isinstance(sub, str):
        return ""
    return "/".join(p for p in sub.split("/") if p not in ("", "."))


def _rel_posix(path: Path, root: Path) -> str:
    rel = os.path.relpath(path, root)
    return "" if rel == "." else rel.replace(os.sep, "/")


# --------------------------------------------------------------------------- /view


def _resolve_view_target(query) -> tuple[Path | None, web.Response | None, str]:
    """Resolve ``filename``/``type``/``subfolder`` of a /view-like request."""
    raw = query.get("filename")
    if raw is None or raw == "":
        return None, error_response("filename is required", 400), ""
    filename, base_dir = paths.annotated_filepath(raw)
    if not filename or "\x00" in filename:
        return None, error_response("invalid filename", 400), ""
    if base_dir is None:
        kind = query.get("type") or "output"
        base_dir = paths.get_directory_by_type(kind)
        if base_dir is None:
            return None, error_response(f"invalid type: {kind!r}", 400), ""
    subfolder = query.get("subfolder", "") or ""
    try:
        target = safe_join(base_dir, subfolder, filename)
    except PathEscapeError as e:
        return None, forbidden(e), ""
    return target, None, os.path.basename(filename.replace("\\", "/"))


# Decoding is what costs memory (4 bytes a pixel and more), and a PNG of one colour holds
# 169 megapixels in 160 KiB: previews, channel extraction, mask merges and model previews
# decode nothing larger than this (8192 x 8192, a 4x upscale of a 2048 image); the raw file
# is still served unchanged by /view without preview/channel.
MAX_PREVIEW_PIXELS = 8192 * 8192


class ImageTooLarge(ValueError):
    def __init__(self, size: tuple[int, int] | None):
        self.size = size
        dims = f"{size[0]} x {size[1]} pixels" if size else "more pixels than Pillow allows"
        super().__init__(f"image too large to decode ({dims}; the limit is {MAX_PREVIEW_PIXELS} pixels): "
                         "request the file without preview or channel")


def open_bounded_image(src: Any):
    """``PIL.Image.open(src)`` that refuses (:class:`ImageTooLarge`) an image whose declared
    size exceeds :data:`MAX_PREVIEW_PIXELS`, before anything is decoded."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(src)
    except Image.DecompressionBombError:
        raise ImageTooLarge(None) from None
    width, height = img.size
    if width * height > MAX_PREVIEW_PIXELS:
        img.close()
        raise ImageTooLarge((width, height))
    return img


def _too_large(e: ImageTooLarge) -> web.Response:
    return error_response(str(e), 422)


def _encode_preview(path: Path, fmt: str, quality: int, channel: str) -> bytes:
    with open_bounded_image(path) as img:
        img.load()
        if fmt == "jpeg" or channel == "rgb":
            img = img.convert("RGB")
        elif img.mode not in ("RGB", "RGBA", "L", "LA"):
            img = img.convert("RGBA")
        buf = io.BytesIO()
        img.save(buf, format="WEBP" if fmt == "webp" else "JPEG", quality=quality)
        return buf.getvalue()


def _encode_channel(path: Path, channel: str) -> bytes:
    from PIL import Image

    with open_bounded_image(path) as img:
        img.load()
        has_alpha = img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info)
        if channel == "rgb":
            out = img.convert("RGB")
        else:  # "a": the alpha channel as an RGBA image whose alpha is the mask
            alpha = img.convert("RGBA").getchannel("A") if has_alpha else Image.new("L", img.size, 255)
            out = Image.new("RGBA", img.size, (0, 0, 0, 0))
            out.putalpha(alpha)
        buf = io.BytesIO()
        out.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()


async def handle_view(request: web.Request) -> web.StreamResponse:
    q = request.rel_url.query
    target, err, display_name = _resolve_view_target(q)
    if err is not None:
        return err
    assert target is not None
    if not target.is_file():
        return error_response("file not found", 404)
    disp = {"Content-Disposition": content_disposition(display_name)}
    channel = (q.get("channel") or "rgba").lower()
    preview = q.get("preview")
    is_image = target.suffix.lower() in IMAGE_EXTENSIONS
    if preview and is_image:
        parts = preview.split(";")
        fmt = parts[0].strip().lower()
        if fmt not in ("webp", "jpeg") or "a" in (q.get("channel") or ""):
            fmt = "webp"
        quality = 90
        if len(parts) > 1 and parts[-1].strip().isdigit():
            quality = max(1, min(100, int(parts[-1].strip())))
        try:
            body = await asyncio.to_thread(_encode_preview, target, fmt, quality, channel)
        except ImageTooLarge as e:
            return _too_large(e)
        except Exception as e:  # noqa: BLE001 - not decodable: fall through to the raw file
            log.debug("preview of %s failed: %s", target, e)
        else:
            return web.Response(body=body, content_type=f"image/{fmt}",
                                headers={**disp, "X-Content-Type-Options": "nosniff"})
    if channel in ("rgb", "a"):
        try:
            body = await asyncio.to_thread(_encode_channel, target, channel)
        except ImageTooLarge as e:
            return _too_large(e)
        except Exception as e:  # noqa: BLE001
            return error_response(f"cannot extract channel '{channel}': {type(e).__name__}", 400)
        return web.Response(body=body, content_type="image/png",
                            headers={**disp, "X-Content-Type-Options": "nosniff"})
    return file_response(target, headers=disp, neutralize=True)


# --------------------------------------------------------------------------- /view_metadata

MAX_SAFETENSORS_HEADER = 8 * 1024 * 1024


def read_safetensors_header(path: str | os.PathLike, max_size: int = MAX_SAFETENSORS_HEADER) -> dict | None:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n <= 0 or n > max_size:
                return None
            data = f.read(n)
            if len(data) != n:
                return None
        obj = json.loads(data)
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


def _find_model(folder: str, filename: str) -> tuple[Path | None, web.Response | None]:
    entry = paths.folder_names_and_paths.get(folder)
    if entry is None or folder in ("custom_nodes",):
        return None, error_response(f"unknown model folder: {folder}", 404)
    escape: PathEscapeError | None = None
    for base in entry[0]:
        try:
            p = safe_join(base, filename)
        except PathEscapeError as e:
            escape = e
            continue
        if p.is_file():
            return p, None
    if escape is not None:
        return None, forbidden(escape)
    return None, error_response("model not found", 404)


async def handle_view_metadata(request: web.Request) -> web.Response:
    folder = request.match_info["folder"]
    filename = request.rel_url.query.get("filename", "")
    if not filename or not filename.endswith(".safetensors"):
        return error_response("filename must name a .safetensors file", 404)
    path, err = _find_model(folder, filename)
    if err is not None:
        return err
    header = await asyncio.to_thread(read_safetensors_header, path, 1024 * 1024)
    if header is None or not isinstance(header.get("__metadata__"), dict):
        return error_response("no metadata", 404)
    return json_response(header["__metadata__"])


# --------------------------------------------------------------------------- uploads


def _dir_for_type(kind: str | None) -> tuple[str | None, str]:
    kind = kind or "input"
    return paths.get_directory_by_type(kind), kind


def _same_content(path: Path, data_file) -> bool:
    """True when ``path`` holds exactly the bytes of ``data_file`` (a seekable file)."""
    try:
        data_file.seek(0, os.SEEK_END)
        size = data_file.tell()
        if path.stat().st_size != size:
            return False
        data_file.seek(0)
        a, b = hashlib.sha256(), hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                a.update(chunk)
        for chunk in iter(lambda: data_file.read(1 << 20), b""):
            b.update(chunk)
        return a.digest() == b.digest()
    except OSError:
        return False
    finally:
        data_file.seek(0)


def _save_upload(root: str, subfolder: str, filename: str, data_file, overwrite: bool) -> str:
    """Write ``data_file`` as ``root/subfolder/filename`` (renaming ``x (1).png`` on clashes
    unless ``overwrite``; an identical existing file is reused). Returns the final name.
    Raises PathEscapeError."""
    folder = safe_join(root, subfolder)
    os.makedirs(folder, exist_ok=True)
    folder = safe_join(root, subfolder)  # re-check after creation (symlink races)
    stem, ext = os.path.splitext(filename)
    name = filename
    if overwrite:
        target = safe_join(folder, name)
        if target.is_dir():
            raise IsADirectoryError(name)
    else:
        for i in range(1, 100_000):
            try:
                target = safe_join(folder, name)
            except PathEscapeError:
                target = None  # a symlink leading outside owns this name: treat it as taken
            if target is not None and not target.exists():
                break
            if target is not None and target.is_file() and _same_content(target, data_file):
                return name  # same content already there: no new file
            name = f"{stem} ({i}){ext}"
        else:
            raise FileExistsError(filename)
    fd, tmp = make_temp_file(folder, ".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            data_file.seek(0)
            shutil.copyfileobj(data_file, out, 1 << 20)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return name


async def _read_form(request: web.Request):
    try:
        return await request.post(), None
    except web.HTTPRequestEntityTooLarge:
        return None, error_response("Request body too large", 413)
    except Exception as e:  # noqa: BLE001 - malformed multipart
        return None, error_response(f"invalid multipart body: {type(e).__name__}", 400)


async def _do_upload(request: web.Request, post, data_file) -> web.Response:
    image = post.get("image")
    filename = clean_client_filename(getattr(image, "filename", None))
    if filename is None:
        return error_response("invalid or missing file name", 400)
    root, kind = _dir_for_type(post.get("type") if isinstance(post.get("type"), str) else None)
    if root is None:
        return error_response(f"invalid type: {kind!r}", 400)
    raw_sub = post.get("subfolder", "")
    if not isinstance(raw_sub, str):
        return error_response("invalid subfolder", 400)
    subfolder = clean_subfolder(raw_sub)
    overwrite = str(post.get("overwrite", "")).lower() in ("true", "1")
    try:
        name = await asyncio.to_thread(_save_upload, root, subfolder, filename, data_file, overwrite)
    except PathEscapeError as e:
        return forbidden(e)
    except IsADirectoryError:
        return error_response("a directory with that name exists", 400)
    except FileExistsError:
        return error_response("too many files with that name", 409)
    except OSError as e:
        return error_response(f"cannot save file: {e.strerror or type(e).__name__}", 400)
    return json_response({"name": name, "subfolder": subfolder, "type": kind})


async def handle_upload_image(request: web.Request) -> web.Response:
    post, err = await _read_form(request)
    if err is not None:
        return err
    image = post.get("image")
    if image is None or not hasattr(image, "file"):
        return error_response("multipart field 'image' (a file) is required", 400)
    return await _do_upload(request, post, image.file)


def _merge_mask(original: Path, mask_file) -> io.BytesIO:
    from PIL.PngImagePlugin import PngInfo

    with open_bounded_image(original) as orig:
        meta = PngInfo()
        for k, v in (getattr(orig, "text", None) or {}).items():
            if isinstance(v, str):
                meta.add_text(k, v)
        rgba = orig.convert("RGBA")
    mask_file.seek(0)
    with open_bounded_image(mask_file) as m:
        alpha = m.convert("RGBA").getchannel("A")
    if alpha.size != rgba.size:
        alpha = alpha.resize(rgba.size)
    rgba.putalpha(alpha)
    buf = io.BytesIO()
    rgba.save(buf, format="PNG", compress_level=4, pnginfo=meta)
    buf.seek(0)
    return buf


async def handle_upload_mask(request: web.Request) -> web.Response:
    post, err = await _read_form(request)
    if err is not None:
        return err
    image = post.get("image")
    if image is None or not hasattr(image, "file"):
        return error_response("multipart field 'image' (a file) is required", 400)
    raw_ref = post.get("original_ref")
    if not isinstance(raw_ref, str):
        return error_response("original_ref (JSON) is required", 400)
    try:
        ref = parse_json_body(raw_ref, "original_ref")
    except JSONBodyError as e:
        return error_response(json.loads(e.text)["error"], 400)
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
        return error_response("original_ref must be an object with a filename", 400)
    query = {"filename": ref["filename"], "type": ref.get("type") or "output",
             "subfolder": ref.get("subfolder") or ""}
    if not all(isinstance(v, str) for v in query.values()):
        return error_response("original_ref fields must be strings", 400)
    original, err, _ = _resolve_view_target(query)
    if err is not None:
        return err
    if not original.is_file():
        return error_response("original image not found", 404)
    try:
        merged = await asyncio.to_thread(_merge_mask, original, image.file)
    except ImageTooLarge as e:
        return _too_large(e)
    except Exception as e:  # noqa: BLE001 - undecodable image or mask
        return error_response(f"cannot merge mask: {type(e).__name__}", 400)
    return await _do_upload(request, post, merged)


# --------------------------------------------------------------------------- /internal


async def handle_internal_files(request: web.Request) -> web.Response:
    kind = request.match_info["type"]
    if kind not in ("input", "output", "temp"):
        return error_response("Invalid directory type", 400)
    root = paths.get_directory_by_type(kind)

    def scan() -> list[str]:
        try:
            entries = []
            with os.scandir(root) as it:
                for e in it:
                    if e.name.startswith(".") or e.name.lower() in ("thumbs.db", "desktop.ini"):
                        continue
                    try:
                        if e.is_file():
                            entries.append((e.stat().st_mtime, e.name))
                    except OSError:
                        continue
            entries.sort(key=lambda t: (-t[0], t[1]))
            return [n for _, n in entries]
        except OSError:
            return []

    return json_response(await asyncio.to_thread(scan))


async def handle_folder_paths(request: web.Request) -> web.Response:
    return json_response({k: list(v[0]) for k, v in paths.folder_names_and_paths.items()})


# --------------------------------------------------------------------------- model library

EXCLUDED_MODEL_FOLDERS = ("configs", "custom_nodes")


async def handle_model_folders(request: web.Request) -> web.Response:
    out = [{"name": name, "folders": list(entry[0])}
           for name, entry in paths.folder_names_and_paths.items()
           if name not in EXCLUDED_MODEL_FOLDERS]
    return json_response(out)


def _list_models(folder: str) -> list[dict]:
    entry = paths.folder_names_and_paths.get(folder)
    bases, exts = entry
    exts = {e.lower() for e in exts}
    out = []
    for index, base in enumerate(bases):
        files, _dirs = paths.recursive_search(base)
        for rel in files:
            if exts and os.path.splitext(rel)[1].lower() not in exts:
                continue
            full = os.path.join(base, rel)
            try:
                st = os.stat(full)
            except OSError:
                continue
            out.append({"name": rel, "pathIndex": index, "modified": st.st_mtime,
                        "created": st.st_ctime, "size": st.st_size})
    return out


async def handle_model_list(request: web.Request) -> web.Response:
    folder = request.match_info["folder"]
    if folder not in paths.folder_names_and_paths or folder in EXCLUDED_MODEL_FOLDERS:
        return error_response(f"unknown model folder: {folder}", 404)
    return json_response(await asyncio.to_thread(_list_models, folder))


def _model_preview(base: str, filename: str) -> bytes | None:
    """WEBP bytes of the preview of model ``filename`` in ``base`` (None when there is none).
    Raises PathEscapeError."""

    model = safe_join(base, filename)
    stem = model.name.rsplit(".", 1)[0] if "." in model.name else model.name
    candidates = []
    for suffix in ("", ".preview"):
        for ext in (".webp", ".png", ".jpg", ".jpeg", ".gif"):
            candidates.append(stem + suffix + ext)
    rel_dir = _rel_posix(model.parent, Path(base).resolve())
    sources: list[Any] = []
    for name in candidates:
        try:
            p = safe_join(base, rel_dir, name)
        except PathEscapeError:
            continue
        if p.is_file():
            sources.append(p)
    if model.suffix.lower() == ".safetensors" and model.is_file():
        header = read_safetensors_header(model)
        meta = (header or {}).get("__metadata__") or {}
        covers = meta.get("ssmd_cover_images") if isinstance(meta, dict) else None
        if isinstance(covers, str):
            try:
                for item in json.loads(covers):
                    sources.append(io.BytesIO(base64.b64decode(item)))
            except (ValueError, TypeError):
                pass
    for src in sources:
        try:
            with open_bounded_image(src) as img:
                img.load()
                if img.mode not in ("RGB", "RGBA"):
                    img = img.convert("RGBA")
                buf = io.BytesIO()
                img.save(buf, format="WEBP")
                return buf.getvalue()
        except Exception:  # noqa: BLE001 - not an image: try the next one
            continue
    return None


async def handle_model_preview(request: web.Request) -> web.Response:
    folder = request.match_info["folder"]
    filename = request.match_info["filename"]
    entry = paths.folder_names_and_paths.get(folder)
    if entry is None or folder in EXCLUDED_MODEL_FOLDERS:
        return error_response(f"unknown model folder: {folder}", 404)
    try:
        index = int(request.match_info["path_index"])
    except ValueError:
        return error_response("path_index must be an integer", 400)
    if index < 0 or index >= len(entry[0]):
        return error_response("path_index out of range", 404)
    try:
        body = await asyncio.to_thread(_model_preview, entry[0][index], filename)
    except PathEscapeError as e:
        return forbidden(e)
    if body is None:
        return error_response("no preview", 404)
    return web.Response(body=body, content_type="image/webp")


# --------------------------------------------------------------------------- setup


def setup(app: web.Application, ctx: ServerContext) -> None:
    add_route(app, "GET", "/view", handle_view)
    add_route(app, "GET", "/view_metadata/{folder}", handle_view_metadata)
    add_route(app, "POST", "/upload/image", handle_upload_image)
    add_route(app, "POST", "/upload/mask", handle_upload_mask)
    add_route(app, "GET", "/internal/files/{type}", handle_internal_files)
    add_route(app, "GET", "/internal/folder_paths", handle_folder_paths)
    add_route(app, "GET", "/experiment/models", handle_model_folders)
    add_route(app, "GET", "/experiment/models/{folder}", handle_model_list)
    add_route(app, "GET", "/experiment/models/preview/{folder}/{path_index}/{filename:.+}",
              handle_model_preview)
