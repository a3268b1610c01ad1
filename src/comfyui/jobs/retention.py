"""Output retention: a content-hash index of job files, per-job deletion, and an age/size policy.

* :class:`FileIndex` records every file a job produced (``kind="output"``: the ``output`` and
  ``temp`` entries of its UI outputs) or had uploaded with it (``kind="input"``) with its
  SHA-256, size and mtime. It lives in the job database (table ``job_files``, Alembic revision
  0002) when the engine has a durable store, otherwise in an in-memory SQLite database.
  ``lookup(digest)`` answers ``/api/v1/images/{digest}``: the newest indexed file whose bytes
  still hash to ``digest`` (a changed file is re-hashed; a vanished or changed one is dropped).
* :func:`delete_job_files` deletes one job's files: every output/temp file its history entry
  or the index names, and the inputs uploaded with it. A file another job also references
  (the same output replayed from the cache, an upload two jobs shared) is kept and reported.
* :class:`RetentionPolicy` (``--output-retention-days``, ``--output-max-size-gb``) deletes
  output files older than the age limit, then the oldest files until the folder is under the
  size limit. :func:`apply_policy` runs it once; the server runs it every
  ``--output-retention-interval`` seconds.

Every path is resolved with :func:`comfyui.paths.safe_join` under its folder; names that
escape it are skipped, never touched.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from .. import paths
from .schema import job_files

log = logging.getLogger(__name__)

OUTPUT_TYPES = ("output", "temp")
FILE_TYPES = ("output", "temp", "input")


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def iter_file_refs(outputs: Any) -> Iterator[dict]:
    """Every ``{"filename", "subfolder", "type"}`` entry in a history entry's ``outputs``
    (``{node_id: {"images": [...], "gifs": [...], "audio": [...], ...}}``), in order."""
    if not isinstance(outputs, dict):
        return
    for node_out in outputs.values():
        if not isinstance(node_out, dict):
            continue
        for key, items in node_out.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if (isinstance(item, dict) and isinstance(item.get("filename"), str) and item["filename"]
                        and item.get("type", "output") in FILE_TYPES):
                    yield {"filename": item["filename"], "subfolder": str(item.get("subfolder") or ""),
                           "type": item.get("type", "output"), "key": key}


def resolve_ref(folder_type: str, subfolder: str, filename: str) -> str | None:
    """The absolute path of a file reference, or None when its folder is unknown or the name
    escapes it."""
    root = paths.get_directory_by_type(folder_type)
    if not root:
        return None
    try:
        return str(paths.safe_join(root, subfolder or "", filename))
    except (ValueError, OSError):  # PathEscapeError is a ValueError
        return None


def _key(folder_type: str, subfolder: str, filename: str) -> tuple[str, str, str]:
    return folder_type, subfolder or "", filename


class FileIndex:
    """Content-hash index of job files (table ``job_files``). Thread-safe."""

    def __init__(self, db: sa.Engine | None = None, write_lock: threading.Lock | None = None):
        if db is None:
            db = sa.create_engine("sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool)
            job_files.create(db, checkfirst=True)
            self._own_db = True
        else:
            self._own_db = False
        self.db = db
        self._lock = write_lock or threading.Lock()

    @classmethod
    def for_engine(cls, engine: Any) -> "FileIndex":
        """The index in the engine's job database when it has one (a DurableQueue)."""
        queue = getattr(engine, "queue", None)
        db = getattr(queue, "db", None)
        if isinstance(db, sa.Engine):
            return cls(db, getattr(queue, "write_lock", None))
        return cls()

    def close(self) -> None:
        if self._own_db:
            self.db.dispose()

    # ---- writing ----
    def add(self, prompt_id: str, refs: Iterable[dict], kind: str = "output") -> dict[tuple, str]:
        """Hash and record the files ``refs`` name for ``prompt_id`` (existing rows for the
        same job and path are refreshed). Returns ``{(type, subfolder, filename): sha256}`` for
        the files that exist."""
        found: dict[tuple, tuple[str, int, float]] = {}
        for ref in refs:
            key = _key(ref["type"], ref.get("subfolder", ""), ref["filename"])
            if key in found:
                continue
            path = resolve_ref(*key)
            if path is None:
                continue
            try:
                st = os.stat(path)
                if not os.path.isfile(path):
                    continue
                found[key] = (ref.get("sha256") or file_sha256(path), st.st_size, st.st_mtime)
            except OSError:
                continue
        if not found:
            return {}
        now = time.time()
        with self._lock, self.db.begin() as conn:
            existing = {(r.folder_type, r.subfolder, r.filename): r.id for r in conn.execute(
                sa.select(job_files.c.id, job_files.c.folder_type, job_files.c.subfolder, job_files.c.filename)
                .where(job_files.c.prompt_id == prompt_id, job_files.c.kind == kind))}
            for key, (sha, size, mtime) in found.items():
                values = dict(sha256=sha, size=size, mtime=mtime)
                if key in existing:
                    conn.execute(job_files.update().where(job_files.c.id == existing[key]).values(**values))
                else:
                    conn.execute(job_files.insert().values(prompt_id=prompt_id, kind=kind, folder_type=key[0],
                                                           subfolder=key[1], filename=key[2], created_at=now,
                                                           **values))
        return {k: v[0] for k, v in found.items()}

    def forget(self, keys: Iterable[tuple[str, str, str]], prompt_id: str | None = None) -> None:
        keys = list(keys)
        if not keys:
            return
        with self._lock, self.db.begin() as conn:
            for folder_type, subfolder, filename in keys:
                q = job_files.delete().where(job_files.c.folder_type == folder_type,
                                             job_files.c.subfolder == subfolder, job_files.c.filename == filename)
                if prompt_id is not None:
                    q = q.where(job_files.c.prompt_id == prompt_id)
                conn.execute(q)

    def forget_job(self, prompt_id: str) -> None:
        with self._lock, self.db.begin() as conn:
            conn.execute(job_files.delete().where(job_files.c.prompt_id == prompt_id))

    # ---- reading ----
    def rows_for(self, prompt_id: str) -> list[dict]:
        with self.db.connect() as conn:
            return [dict(r) for r in conn.execute(
                sa.select(job_files).where(job_files.c.prompt_id == prompt_id).order_by(job_files.c.id)).mappings()]

    def other_jobs_using(self, key: tuple[str, str, str], prompt_id: str) -> list[str]:
        with self.db.connect() as conn:
            return [r[0] for r in conn.execute(
                sa.select(job_files.c.prompt_id).where(
                    job_files.c.folder_type == key[0], job_files.c.subfolder == key[1],
                    job_files.c.filename == key[2], job_files.c.prompt_id != prompt_id))]

    def lookup(self, digest: str) -> tuple[str, dict] | None:
        """(absolute path, row) of the newest file whose bytes hash to ``digest``."""
        digest = digest.lower()
        with self.db.connect() as conn:
            rows = [dict(r) for r in conn.execute(
                sa.select(job_files).where(job_files.c.sha256 == digest).order_by(job_files.c.id.desc())).mappings()]
        stale: list[int] = []
        result = None
        for row in rows:
            path = resolve_ref(row["folder_type"], row["subfolder"], row["filename"])
            try:
                st = os.stat(path) if path else None
            except OSError:
                st = None
            if st is None or not os.path.isfile(path):
                stale.append(row["id"])
                continue
            if st.st_size != row["size"] or st.st_mtime != row["mtime"]:
                try:
                    same = st.st_size == row["size"] and file_sha256(path) == digest
                except OSError:
                    same = False
                if not same:
                    stale.append(row["id"])
                    continue
            result = (path, row)
            break
        if stale:
            with self._lock, self.db.begin() as conn:
                conn.execute(job_files.delete().where(job_files.c.id.in_(stale)))
        return result


@dataclass
class DeleteReport:
    deleted: list[dict] = field(default_factory=list)
    kept: list[dict] = field(default_factory=list)     # still used by another job
    missing: list[dict] = field(default_factory=list)  # already gone


def delete_job_files(index: FileIndex, prompt_id: str, history_entry: dict | None) -> DeleteReport:
    """Delete the output/temp files of one job and the inputs uploaded with it."""
    targets: dict[tuple, str] = {}
    for ref in iter_file_refs((history_entry or {}).get("outputs")):
        if ref["type"] in OUTPUT_TYPES:
            targets.setdefault(_key(ref["type"], ref["subfolder"], ref["filename"]), "output")
    for row in index.rows_for(prompt_id):
        if row["kind"] == "input" or row["folder_type"] in OUTPUT_TYPES:
            targets.setdefault(_key(row["folder_type"], row["subfolder"], row["filename"]), row["kind"])
    report = DeleteReport()
    gone: list[tuple] = []
    for key, kind in targets.items():
        entry = {"type": key[0], "subfolder": key[1], "filename": key[2], "kind": kind}
        others = index.other_jobs_using(key, prompt_id)
        if others:
            entry["used_by"] = sorted(set(others))[:10]
            report.kept.append(entry)
            continue
        path = resolve_ref(*key)
        if path is None:
            report.missing.append(entry)
            continue
        try:
            os.remove(path)
            report.deleted.append(entry)
        except FileNotFoundError:
            report.missing.append(entry)
        except IsADirectoryError:
            report.missing.append(entry)
        except OSError as e:
            log.warning("could not delete %s: %s", path, e)
            entry["error"] = str(e)
            report.kept.append(entry)
            continue
        gone.append(key)
    index.forget_job(prompt_id)
    index.forget(gone)
    return report


@dataclass
class RetentionPolicy:
    max_age_days: float = 0.0  # 0 = no age limit
    max_size_bytes: int = 0    # 0 = no size limit

    @property
    def enabled(self) -> bool:
        return self.max_age_days > 0 or self.max_size_bytes > 0

    @classmethod
    def from_config(cls, config: Any) -> "RetentionPolicy":
        def get(name: str) -> float:
            value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
            try:
                return max(float(value or 0), 0.0)
            except (TypeError, ValueError):
                return 0.0
        return cls(get("output_retention_days"), int(get("output_max_size_gb") * 1024 ** 3))


@dataclass
class PolicyReport:
    deleted: list[str] = field(default_factory=list)  # paths relative to the output folder
    freed_bytes: int = 0
    remaining_bytes: int = 0


def apply_policy(policy: RetentionPolicy, output_dir: str | None = None, *, index: FileIndex | None = None,
                 now: float | None = None) -> PolicyReport:
    """Delete output files older than ``max_age_days``, then the oldest ones until the folder
    holds at most ``max_size_bytes``. Symlinks are not followed; empty subfolders go too."""
    report = PolicyReport()
    output_dir = output_dir or paths.get_output_directory()
    if not policy.enabled or not output_dir or not os.path.isdir(output_dir):
        return report
    now = time.time() if now is None else now
    files: list[tuple[float, int, str]] = []
    for root, dirs, names in os.walk(output_dir, followlinks=False):
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            files.append((st.st_mtime, st.st_size, path))
    files.sort()
    total = sum(f[1] for f in files)
    cutoff = now - policy.max_age_days * 86400 if policy.max_age_days > 0 else None
    removed: list[str] = []
    for mtime, size, path in files:
        too_old = cutoff is not None and mtime < cutoff
        too_big = policy.max_size_bytes > 0 and total > policy.max_size_bytes
        if not (too_old or too_big):
            break  # sorted oldest first: the rest are newer, and the size is already fine
        try:
            os.remove(path)
        except OSError as e:
            log.warning("retention: could not delete %s: %s", path, e)
            continue
        total -= size
        report.freed_bytes += size
        removed.append(path)
    report.remaining_bytes = total
    root_real = os.path.realpath(output_dir)
    keys = []
    for path in removed:
        rel = os.path.relpath(path, output_dir).replace(os.sep, "/")
        report.deleted.append(rel)
        sub, _, name = rel.rpartition("/")
        keys.append(("output", sub, name))
        parent = os.path.dirname(path)
        while os.path.realpath(parent) != root_real and parent.startswith(output_dir):
            try:
                os.rmdir(parent)  # only succeeds when empty
            except OSError:
                break
            parent = os.path.dirname(parent)
    if index is not None and keys:
        index.forget(keys)
    if removed:
        log.info("output retention: deleted %d file(s), freed %.1f MB", len(removed), report.freed_bytes / 1e6)
    return report
