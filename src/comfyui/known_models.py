"""Known models: the files the official templates and the tutorials name, with where to get them
(``data/known_models.json``, built by ``scripts/build_known_models.py``).

As in ComfyUI LTS, a known file that is not on disk is still offered in the loaders' file lists
(:func:`filename_list`), and a prompt that names it downloads it before its loader runs
(:func:`fetch_missing`, called by ``Folders.get_full_path_or_raise``). ``--disable-known-models``
turns both off: the file lists are the disk's and such a prompt fails validation.
"""
from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import threading
from dataclasses import dataclass

from . import paths, runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownModel:
    name: str
    folder: str
    url: str
    sha256: str | None = None

    @property
    def source(self):
        from .downloads import parse_source

        return parse_source(self.url)


@functools.cache
def table() -> dict[tuple[str, str], KnownModel]:
    """{(folder, name): KnownModel} of the shipped table."""
    rows = json.loads(importlib.resources.files("comfyui.data").joinpath("known_models.json").read_text("utf-8"))
    return {(row["directory"], row["name"]): KnownModel(row["name"], row["directory"], row["url"], row.get("sha256"))
            for row in rows}


def find(name: str, folder: str | None = None) -> KnownModel | None:
    """The known model ``name`` (in ``folder`` when given)."""
    if folder is not None:
        return table().get((paths.map_legacy(folder), name))
    return next((m for (f, n), m in table().items() if n == name), None)


def enabled() -> bool:
    return not getattr(runtime.current().config, "disable_known_models", False)


def filename_list(folder: str) -> list[str]:
    """A loader's choices: the folder's files plus its known models not on disk (unless
    ``--disable-known-models``)."""
    on_disk = paths.get_filename_list(folder)
    if not enabled():
        return on_disk
    folder = paths.map_legacy(folder)
    known = [name for (f, name) in table() if f == folder]
    return sorted(set(on_disk).union(known))


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def fetch_missing(folder: str, name: str) -> str | None:
    """Download the known model ``name`` of ``folder`` (not on disk) -> its path; None when it is
    not known or known models are off. Two prompts asking for one file download it once."""
    entry = find(name, folder)
    if entry is None or not enabled():
        return None
    with _locks_guard:
        lock = _locks.setdefault((entry.folder, name), threading.Lock())
    with lock:
        existing = paths.get_full_path(entry.folder, name)
        if existing is not None:
            return existing
        from .downloads import download, node_progress_class

        log.info("%s is a known model that is not in models/%s: downloading it from %s", name, entry.folder, entry.url)
        return download(entry.source, entry.folder, name, sha256=entry.sha256, tqdm_class=node_progress_class()).path
