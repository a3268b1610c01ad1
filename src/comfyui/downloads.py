"""Model downloads: from a Hugging Face repository, CivitAI or a plain URL into ``models/<folder>``.

Sources (:func:`parse_source`):

* ``owner/repo path/in/repo.safetensors`` or ``hf://owner/repo[@revision]/path/in/repo.safetensors``
  or ``https://huggingface.co/owner/repo/resolve/<revision>/path``: downloaded through
  ``huggingface_hub`` (``HF_ENDPOINT``, the ``hf auth login`` token or ``HF_TOKEN`` for gated
  repositories, its redirects and retries), not into its cache: huggingface_hub deletes an
  interrupted download's bytes there, and a model should be a plain file in ``models/``.
* ``https://civitai.com/models/<id>[?modelVersionId=<v>]`` or
  ``https://civitai.com/api/download/models/<v>``: CivitAI's download URL (``CIVITAI_API_TOKEN``
  for models behind a login), then as a plain URL.
* any other ``http(s)://`` URL: streamed with the standard library.

Every download goes to ``<temp>/downloads/<key>-<name>.part`` first (outside ``models/``); a run
that stops (Ctrl-C, a dropped connection) leaves it there and the next run resumes it with a
``Range`` request; the complete, checked file is moved into the model folder.

A file is checked against its SHA-256 (given, from the known-models table, or a Hugging Face LFS
file's ETag, which is its SHA-256) before it is placed in the model folder; a mismatch deletes the
download and raises :class:`ChecksumMismatch`. Nothing partial is ever in ``models/``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from . import paths

log = logging.getLogger(__name__)

HF_HOSTS = ("huggingface.co", "hf.co")
CIVITAI_HOSTS = ("civitai.com", "civitai.red")
CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(Exception):
    """A download that could not be done; the message says why and what to do."""


class ChecksumMismatch(DownloadError):
    pass


@dataclass(frozen=True)
class Source:
    """Where a file comes from: a Hugging Face repo file or a URL."""
    repo_id: str | None = None
    path_in_repo: str | None = None
    revision: str | None = None
    url: str | None = None

    @property
    def is_hf(self) -> bool:
        return self.repo_id is not None

    @property
    def file_name(self) -> str:
        """The name the file has at its source (a URL's last path part)."""
        if self.is_hf:
            return self.path_in_repo.rsplit("/", 1)[-1]
        return urllib.parse.unquote(urllib.parse.urlsplit(self.url).path.rsplit("/", 1)[-1])

    def __str__(self) -> str:
        if self.is_hf:
            rev = f"@{self.revision}" if self.revision else ""
            return f"hf://{self.repo_id}{rev}/{self.path_in_repo}"
        return self.url


def parse_source(spec: str, file: str | None = None) -> Source:
    """A :class:`Source` from what a user typed (see the module docstring for the forms)."""
    spec = spec.strip()
    if spec.startswith("hf://"):
        rest = spec[len("hf://"):]
        parts = rest.split("/")
        if len(parts) < 2 or not all(parts[:2]):
            raise DownloadError(f"{spec}: expected hf://owner/repo[@revision]/path/in/repo")
        repo, _, revision = "/".join(parts[:2]).partition("@")
        path_in_repo = "/".join(parts[2:]) or file
        if not path_in_repo:
            raise DownloadError(f"{spec}: which file of {repo}? add its path: hf://{repo}/path/in/repo")
        return Source(repo_id=repo, path_in_repo=path_in_repo, revision=revision or None)
    if "://" in spec:
        split = urllib.parse.urlsplit(spec)
        if split.scheme not in ("http", "https"):
            raise DownloadError(f"{spec}: only http(s):// and hf:// sources can be downloaded")
        if split.hostname in HF_HOSTS:
            # /owner/repo/(resolve|blob)/<revision>/<path>
            m = re.match(r"^/([^/]+/[^/]+)/(?:resolve|blob)/([^/]+)/(.+)$", split.path)
            if m:
                return Source(repo_id=m.group(1), revision=urllib.parse.unquote(m.group(2)),
                              path_in_repo=urllib.parse.unquote(m.group(3)))
            m = re.match(r"^/([^/]+/[^/]+)/?$", split.path)
            if m and file:
                return Source(repo_id=m.group(1), path_in_repo=file)
            raise DownloadError(f"{spec}: a Hugging Face URL must name a file "
                                "(https://huggingface.co/owner/repo/resolve/main/file.safetensors)")
        return Source(url=spec)
    if re.match(r"^[\w.-]+/[\w.-]+$", spec):
        if not file:
            raise DownloadError(f"{spec}: which file of the repository? "
                                f"`comfyui model download {spec} path/in/repo.safetensors`")
        return Source(repo_id=spec, path_in_repo=file)
    raise DownloadError(f"{spec!r} is not a Hugging Face repository (owner/repo FILE, hf://owner/repo/FILE) "
                        "nor an http(s) URL")


# ---- where a file goes ----

# other names a repository path uses for a model folder (singular, older)
_FOLDER_HINTS = {"checkpoint": "checkpoints", "ckpt": "checkpoints", "lora": "loras", "embedding": "embeddings",
                 "hypernetwork": "hypernetworks", "upscaler": "upscale_models", "upscale": "upscale_models"}


def model_folders() -> list[str]:
    """The model folders a file can be downloaded into."""
    return sorted(name for name in paths.active_folders().folder_names_and_paths
                  if name not in ("custom_nodes", "configs", "diffusers", "classifiers"))


def infer_folder(source: Source, name: str) -> str | None:
    """The model folder a file belongs in: the known-models table's, else a folder name in its
    repository path (``split_files/vae/ae.safetensors`` -> vae); None when nothing tells."""
    from . import known_models

    entry = known_models.find(name)
    if entry is not None:
        return entry.folder
    if source.is_hf:
        folders = set(model_folders())
        for part in reversed(source.path_in_repo.split("/")[:-1]):
            part = paths.map_legacy(part.lower())
            if part in folders:
                return part
            if part in _FOLDER_HINTS:
                return _FOLDER_HINTS[part]
    return None


def target_path(folder: str, name: str) -> str:
    """``models/<folder>/<name>``; ``name`` may have sub-folders."""
    folder = paths.map_legacy(folder)
    if folder not in model_folders():
        raise DownloadError(f"unknown model type {folder!r}; one of: {', '.join(model_folders())}")
    candidates = paths.active_folders().get_folder_paths(folder)
    # the path named after the folder (models/diffusion_models, not the legacy models/unet listed first)
    base = next((p for p in candidates if os.path.basename(p.rstrip(os.sep)) == folder), candidates[0])
    try:
        return str(paths.safe_join(base, name))
    except paths.PathEscapeError as exc:
        raise DownloadError(f"{name!r} is not a file name inside models/{folder}") from exc


# ---- checksums ----

def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check(path: str, expected: str | None, what: str) -> None:
    """Raise ChecksumMismatch (after deleting ``path``) when its SHA-256 is not ``expected``."""
    if not expected:
        return
    actual = sha256_of(path)
    if actual != expected.lower():
        os.remove(path)
        raise ChecksumMismatch(f"checksum mismatch for {what}: expected sha256 {expected.lower()}, got {actual}; "
                               "the download was deleted, nothing was placed in models/")


# ---- Hugging Face ----

def _origin(url: str) -> tuple[str, str | None, int | None]:
    split = urllib.parse.urlsplit(url)
    return split.scheme, split.hostname, split.port


def _hf_download(source: Source, name: str, expected_sha256: str | None, bar_class) -> str:
    """Download a Hub file to its partial file (resumed where an earlier run stopped) through
    huggingface_hub (endpoint, login token, redirects, retries); -> the verified partial file."""
    import huggingface_hub
    from huggingface_hub import errors as hf_errors
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    endpoint = os.environ.get("HF_ENDPOINT") or None  # read now: huggingface_hub reads it once, at import
    url = huggingface_hub.hf_hub_url(source.repo_id, source.path_in_repo, revision=source.revision, endpoint=endpoint)
    try:
        meta = huggingface_hub.get_hf_file_metadata(url, endpoint=endpoint)
    except hf_errors.GatedRepoError as exc:
        raise DownloadError(f"{source}: {source.repo_id} is a gated repository. Log in with `hf auth login` (or set "
                            f"HF_TOKEN) and accept its terms at https://huggingface.co/{source.repo_id}") from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise DownloadError(f"{source}: repository {source.repo_id} not found (or private: log in with "
                            "`hf auth login` or set HF_TOKEN)") from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise DownloadError(f"{source}: revision {source.revision} not found in {source.repo_id}") from exc
    except hf_errors.EntryNotFoundError as exc:
        raise DownloadError(f"{source}: no file {source.path_in_repo} in {source.repo_id}") from exc
    except (hf_errors.HfHubHTTPError, OSError) as exc:
        raise DownloadError(f"{source}: {exc}") from exc
    # an LFS file's ETag is its SHA-256: the bytes are checked against it when nothing else is given
    expected = expected_sha256 or (meta.etag if meta.etag and _SHA256.match(meta.etag) else None)
    part = _partial_path(url, name)
    os.makedirs(os.path.dirname(part), exist_ok=True)
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if meta.size is not None and have > meta.size:
        have = 0
        os.remove(part)
    headers = build_hf_headers()
    if _origin(meta.location) != _origin(url):
        headers.pop("authorization", None)  # the login token stays on the Hub, as huggingface_hub does
    if have:
        log.info("resuming %s at byte %d", name, have)
    try:
        with open(part, "ab") as f:
            http_get(meta.location, f, resume_size=have, headers=headers, expected_size=meta.size,
                     displayed_filename=name, tqdm_class=bar_class)
    except (hf_errors.HfHubHTTPError, OSError, ValueError) as exc:
        raise DownloadError(f"{source}: the download stopped ({exc}); run it again to resume") from exc
    _check(part, expected, str(source))
    return part


# ---- URLs ----

def civitai_download_url(url: str) -> str:
    """CivitAI's file download URL for a model page (``/models/<id>[?modelVersionId=<v>]``) or
    download URL; a page without a version asks CivitAI's API for its newest version."""
    split = urllib.parse.urlsplit(url)
    base = os.environ.get("CIVITAI_ENDPOINT") or f"{split.scheme}://{split.netloc}"
    if re.match(r"^/api/download/models/\d+", split.path):
        return f"{base}{split.path}" + (f"?{split.query}" if split.query else "")
    version = urllib.parse.parse_qs(split.query).get("modelVersionId", [None])[0]
    m = re.match(r"^/models/(\d+)", split.path)
    if version is None and m:
        info = _get_json(f"{base}/api/v1/models/{m.group(1)}")
        versions = info.get("modelVersions") or []
        if not versions:
            raise DownloadError(f"{url}: CivitAI lists no version of model {m.group(1)}")
        version = versions[0]["id"]
    if version is None:
        raise DownloadError(f"{url}: not a CivitAI model page (/models/<id>) or download URL (/api/download/models/<v>)")
    return f"{base}/api/download/models/{version}"


def _auth_headers(url: str) -> dict[str, str]:
    host = urllib.parse.urlsplit(url).hostname or ""
    token = os.environ.get("CIVITAI_API_TOKEN")
    if token and (host in CIVITAI_HOSTS or host == urllib.parse.urlsplit(os.environ.get("CIVITAI_ENDPOINT", "")).hostname):
        return {"Authorization": f"Bearer {token}"}
    return {}


def _get_json(url: str) -> dict:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=_auth_headers(url)), timeout=60) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, ValueError) as exc:
        raise DownloadError(f"{url}: {exc}") from exc


def _disposition_name(header: str | None) -> str | None:
    if not header:
        return None
    m = re.search(r"filename\*=UTF-8''([^;]+)", header, re.I) or re.search(r'filename="([^"]+)"', header, re.I) \
        or re.search(r"filename=([^;\s]+)", header, re.I)
    return os.path.basename(urllib.parse.unquote(m.group(1))) if m else None


def resolve_url_name(url: str) -> str:
    """The file name a URL serves (Content-Disposition of a HEAD, else the URL's last part)."""
    try:
        req = urllib.request.Request(url, method="HEAD", headers=_auth_headers(url))
        with urllib.request.urlopen(req, timeout=60) as resp:
            name = _disposition_name(resp.headers.get("Content-Disposition"))
            if name:
                return name
            url = resp.url
    except urllib.error.URLError:
        pass  # the GET will say what is wrong
    return Source(url=url).file_name


def _partial_path(url: str, name: str) -> str:
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return os.path.join(paths.active_folders().get_temp_directory(), "downloads", f"{key}-{name}.part")


def _url_download(url: str, name: str, expected_sha256: str | None, bar_class) -> str:
    """Stream ``url`` to its partial file, resuming what an earlier try left; -> the complete,
    verified partial file."""
    part = _partial_path(url, name)
    os.makedirs(os.path.dirname(part), exist_ok=True)
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": "comfyui", **_auth_headers(url)}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after what we have: the partial file is complete
            resp = None
        elif exc.code in (401, 403):
            raise DownloadError(f"{url}: HTTP {exc.code}: the server wants a login"
                                + (" (set CIVITAI_API_TOKEN)" if "civitai" in url else "")) from exc
        else:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: {exc.reason}") from exc
    if resp is not None:
        with resp:
            if have and resp.status == 206:
                log.info("resuming %s at byte %d", name, have)
                mode = "ab"
            else:
                have, mode = 0, "wb"  # no Range support: start over
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
            _stream(resp, part, mode, have, total, name, bar_class)
            if total is not None and os.path.getsize(part) != total:
                raise DownloadError(f"{url}: the connection ended at {os.path.getsize(part)} of {total} bytes; "
                                    "run the download again to resume")
    _check(part, expected_sha256, url)
    return part


def _stream(resp, part: str, mode: str, have: int, total: int | None, name: str, bar_class) -> None:
    bar = bar_class(total=total, initial=have, unit="B", unit_scale=True, desc=name)
    try:
        with open(part, mode) as f:
            while chunk := resp.read(CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
    except (OSError, urllib.error.URLError) as exc:
        raise DownloadError(f"{name}: the download stopped ({exc}); run it again to resume") from exc
    finally:
        bar.close()


def node_progress_class():
    """A tqdm progress bar (on stderr) that is also the running node's progress in the UI and
    stops the download when the prompt is interrupted (the partial file stays for a resume)."""
    from tqdm.auto import tqdm

    from .engine.progress import ProgressBar

    class NodeProgress(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._done = int(kwargs.get("initial") or 0)
            self._node_bar = ProgressBar(int(kwargs.get("total") or 0) or 1)
            self._shown = -1

        def update(self, n=1):
            result = super().update(n)
            self._done += n
            total = self.total or 0
            percent = int(100 * self._done / total) if total else 0
            if percent != self._shown:  # one UI message per percent
                self._shown = percent
                self._node_bar.update_absolute(min(self._done, total), total or None)
            return result

    return NodeProgress


def _move_into(part: str, target: str) -> None:
    """Move the complete file in; across file systems through a copy that only ever appears
    under its final name complete."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.replace(part, target)
    except OSError:
        incoming = f"{target}.{os.getpid()}.incoming"
        try:
            shutil.copyfile(part, incoming)
            os.replace(incoming, target)
        finally:
            if os.path.exists(incoming):
                os.remove(incoming)
        os.remove(part)


# ---- the one entry point ----

@dataclass
class Downloaded:
    path: str
    folder: str
    name: str
    source: Source


def download(source: Source, folder: str | None = None, name: str | None = None, *,
             sha256: str | None = None, force: bool = False, progress: bool = True, tqdm_class=None) -> Downloaded:
    """Download ``source`` into ``models/<folder>/<name>`` (folder inferred when None, name the
    source's); a file already there is kept unless ``force``. ``tqdm_class``: the progress bar's
    class (a tqdm subclass; :func:`node_progress_class` for a running node)."""
    from . import known_models

    if sha256 and not _SHA256.match(sha256.lower()):
        raise DownloadError(f"--sha256 {sha256}: expected 64 hexadecimal digits")
    if source.url and urllib.parse.urlsplit(source.url).hostname in CIVITAI_HOSTS:
        source = Source(url=civitai_download_url(source.url))
    if name is None:
        name = source.file_name if source.is_hf else resolve_url_name(source.url)
    if not name:
        raise DownloadError(f"{source}: cannot tell the file's name; pass --name")
    folder = folder or infer_folder(source, name)
    if folder is None:
        raise DownloadError(f"{source}: cannot tell which model folder {name} belongs in; pass --type "
                            f"(one of: {', '.join(model_folders())})")
    target = target_path(folder, name)
    if os.path.exists(target) and not force:
        log.info("%s is already in models/%s", name, folder)
        return Downloaded(target, paths.map_legacy(folder), name, source)
    entry = known_models.find(name, folder)
    if sha256 is None and entry is not None and entry.source == source:
        sha256 = entry.sha256
    log.info("downloading %s into models/%s/%s", source, paths.map_legacy(folder), name)
    bar_class = tqdm_class
    if bar_class is None:
        from tqdm.auto import tqdm

        bar_class = tqdm if progress else functools.partial(tqdm, disable=True)
    if source.is_hf:
        part = _hf_download(source, name, sha256, bar_class)
    else:
        part = _url_download(source.url, name, sha256, bar_class)
    _move_into(part, target)
    paths.active_folders().invalidate_cache(folder)
    return Downloaded(target, paths.map_legacy(folder), name, source)
