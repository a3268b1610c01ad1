"""Workspace folders and ComfyUI's ``folder_paths`` API.

The state lives in :class:`Folders`, one per :class:`~comfyui.runtime.Runtime`; the module-level
functions and attributes (ComfyUI's ``folder_paths`` API: custom nodes that ``import
folder_paths`` get this very module) act on the active runtime's.

Default workspace (used until :func:`configure` is called, and by ``configure(base_directory=None)``):

* ``$COMFYUI_HOME`` if that environment variable is set, otherwise
* ``$XDG_DATA_HOME/comfyui`` (``~/.local/share/comfyui`` when ``XDG_DATA_HOME`` is unset).

Importing this module never creates directories; ``configure(create_directories=True)`` does.

Layout under the base directory: ``models/<folder>``, ``input``, ``output``, ``temp``, ``user``,
``custom_nodes``.

:func:`safe_join` is the single path-containment helper every file-serving route must use.
"""
from __future__ import annotations

import functools
import logging
import os
import pathlib
import re
import threading
import time
from collections.abc import Collection, Iterable, Iterator

import yaml

from . import runtime

logger = logging.getLogger(__name__)

__all__ = [
    "PathEscapeError", "safe_join", "configure", "default_base_directory",
    "supported_pt_extensions", "folder_names_and_paths", "models_dir", "base_path",
    "output_directory", "input_directory", "temp_directory", "user_directory",
    "filename_list_cache", "map_legacy", "get_folder_paths", "add_model_folder_path",
    "get_filename_list", "get_full_path", "get_full_path_or_raise", "filter_files_extensions",
    "recursive_search", "get_input_directory", "get_output_directory", "get_temp_directory",
    "get_user_directory", "set_input_directory", "set_output_directory", "set_temp_directory",
    "set_user_directory", "get_directory_by_type", "annotated_filepath", "get_annotated_filepath",
    "exists_annotated_filepath", "get_save_image_path", "get_custom_nodes_directories",
    "load_extra_path_config", "get_input_subfolders", "get_system_user_directory",
    "get_public_user_directory", "cache_helper", "invalidate_cache", "get_models_directory",
    "listing_generation", "Folders", "active_folders",
]


# --------------------------------------------------------------------------------------------
# Path containment
# --------------------------------------------------------------------------------------------

class PathEscapeError(ValueError):
    """A user-supplied path tried to leave the directory it must stay in."""


_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def safe_join(root: str | os.PathLike, *parts: str | os.PathLike) -> pathlib.Path:
    """Join ``parts`` (relative, ``/``-separated) under ``root`` and return the resolved path.

    Rejects NUL bytes, absolute paths, Windows drive letters / UNC prefixes, backslashes and
    ``..`` segments outright; then resolves symlinks and checks the result is still inside
    ``root.resolve()`` (so a symlink inside root pointing outside is refused too).
    The result may be ``root`` itself (e.g. for an empty subfolder).
    """
    root_resolved = pathlib.Path(root).resolve()
    segments: list[str] = []
    for part in parts:
        if isinstance(part, os.PathLike):
            part = os.fspath(part)
        if not isinstance(part, str):
            raise PathEscapeError(f"path component must be a string, got {type(part).__name__}")
        if "\x00" in part:
            raise PathEscapeError("path contains a NUL byte")
        if "\\" in part:
            # On POSIX a backslash is a legal name character, but "..\\x" is an escape on
            # Windows and nobody names model/image files with backslashes.
            raise PathEscapeError(f"path contains a backslash: {part!r}")
        if part.startswith("/") or _DRIVE_RE.match(part):
            raise PathEscapeError(f"absolute path not allowed: {part!r}")
        for seg in part.split("/"):
            if seg in ("", "."):
                continue
            if seg == "..":
                raise PathEscapeError(f"'..' not allowed in path: {part!r}")
            if ":" in seg and os.name == "nt":
                raise PathEscapeError(f"':' not allowed in path on Windows: {part!r}")
            segments.append(seg)
    candidate = root_resolved.joinpath(*segments)
    resolved = candidate.resolve()
    if resolved != root_resolved and not resolved.is_relative_to(root_resolved):
        raise PathEscapeError(f"path escapes its root directory: {'/'.join(segments)!r}")
    return resolved


# --------------------------------------------------------------------------------------------
# Folder registry
# --------------------------------------------------------------------------------------------

supported_pt_extensions: set[str] = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

# Old folder names that ComfyUI still accepts everywhere a folder name is taken.
_LEGACY = {"unet": "diffusion_models", "clip": "text_encoders", "t2i_adapter": "controlnet"}


def map_legacy(folder_name: str) -> str:
    return _LEGACY.get(folder_name, folder_name)


class _FolderMap(dict):
    """``folder_names_and_paths``: a dict that also answers legacy names (``clip``, ``unet``).

    Values are ``(list_of_paths, set_of_extensions)``; custom nodes mutate the list in place
    and assign new keys, both of which are supported.
    """

    def __getitem__(self, key):
        return super().__getitem__(map_legacy(key))

    def __contains__(self, key):
        return super().__contains__(map_legacy(key))

    def get(self, key, default=None):
        return super().get(map_legacy(key), default)

    def __setitem__(self, key, value):
        paths, exts = value
        super().__setitem__(map_legacy(key), (list(paths) if not isinstance(paths, list) else paths, exts))


# (folder name, subdirectories of models/, extensions). Order of subdirectories = search order.
_STANDARD_FOLDERS: list[tuple[str, list[str], set[str]]] = [
    ("checkpoints", ["checkpoints"], supported_pt_extensions),
    ("configs", ["configs"], {".yaml"}),
    ("loras", ["loras"], supported_pt_extensions),
    ("vae", ["vae"], supported_pt_extensions),
    ("text_encoders", ["text_encoders", "clip"], supported_pt_extensions),
    ("diffusion_models", ["unet", "diffusion_models"], supported_pt_extensions),
    ("clip_vision", ["clip_vision"], supported_pt_extensions),
    ("style_models", ["style_models"], supported_pt_extensions),
    ("embeddings", ["embeddings"], supported_pt_extensions),
    ("diffusers", ["diffusers"], {"folder"}),
    ("vae_approx", ["vae_approx"], supported_pt_extensions),
    ("controlnet", ["controlnet", "t2i_adapter"], supported_pt_extensions),
    ("gligen", ["gligen"], supported_pt_extensions),
    ("upscale_models", ["upscale_models"], supported_pt_extensions),
    ("latent_upscale_models", ["latent_upscale_models"], supported_pt_extensions),
    ("hypernetworks", ["hypernetworks"], supported_pt_extensions),
    ("photomaker", ["photomaker"], supported_pt_extensions),
    ("classifiers", ["classifiers"], {""}),
    ("model_patches", ["model_patches"], supported_pt_extensions),
    ("audio_encoders", ["audio_encoders"], supported_pt_extensions),
]


def default_base_directory() -> pathlib.Path:
    home = os.environ.get("COMFYUI_HOME")
    if home:
        return pathlib.Path(home).expanduser().absolute()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return pathlib.Path(data).absolute() / "comfyui"


def _abs(p: str | os.PathLike) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(p)))


def recursive_search(directory: str, excluded_dir_names: Collection[str] | None = None) -> tuple[list[str], dict[str, float]]:
    """All files under ``directory`` as relative posix paths, plus ``{dir: mtime}`` of every
    directory visited (used to invalidate the listing cache). Follows symlinks; skips hidden dirs."""
    if not os.path.isdir(directory):
        return [], {}
    excluded = set(excluded_dir_names or ()) | {".git"}
    result: list[str] = []
    dirs: dict[str, float] = {}
    try:
        dirs[directory] = os.path.getmtime(directory)
    except OSError:
        return [], {}
    seen_real: set[str] = set()
    for dirpath, subdirs, filenames in os.walk(directory, followlinks=True, topdown=True):
        real = os.path.realpath(dirpath)
        if real in seen_real:  # symlink loop
            subdirs[:] = []
            continue
        seen_real.add(real)
        subdirs[:] = [d for d in subdirs if d not in excluded and not d.startswith(".")]
        for f in filenames:
            rel = os.path.relpath(os.path.join(dirpath, f), directory)
            result.append(rel.replace(os.sep, "/"))
        for d in subdirs:
            p = os.path.join(dirpath, d)
            try:
                dirs[p] = os.path.getmtime(p)
            except OSError:
                pass
    return result, dirs


def filter_files_extensions(files: Iterable[str], extensions: Collection[str]) -> list[str]:
    """Sorted files whose lower-cased extension is in ``extensions`` (all files when empty)."""
    exts = {e.lower() for e in extensions}
    return sorted(f for f in files if not exts or os.path.splitext(f)[-1].lower() in exts)


def _stat_dirs(dirs: Iterable[str]) -> dict[str, float]:
    out = {}
    for d in dirs:
        try:
            out[d] = os.stat(d).st_mtime
        except OSError:
            out[d] = -1.0
    return out


def _relative_parts(filename: str) -> list[str] | None:
    """Split a model file name into safe segments, or None when it would leave its folder."""
    if not isinstance(filename, str) or "\x00" in filename:
        return None
    name = filename.replace("\\", "/")
    if name.startswith("/") or _DRIVE_RE.match(name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return parts


_ANNOTATIONS = (("[output]", "output"), ("[input]", "input"), ("[temp]", "temp"))


class Folders:
    """One workspace's folder map: model folders with their search paths and extensions, the
    input/output/temp/user directories, and the mtime-checked file listings. Each
    :class:`~comfyui.runtime.Runtime` has one; the module-level functions below act on the
    active runtime's. A new one has the default workspace's layout (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.folder_names_and_paths: _FolderMap = _FolderMap()
        # folder name -> (sorted file list, {dir: mtime}, time checked)
        self.filename_list_cache: dict[str, tuple[list[str], dict[str, float], float]] = {}
        self._cache_exts: dict[str, frozenset] = {}
        # Bumped whenever a file listing may have changed (see listing_generation).
        self._listing_generation = 0
        # {dir: mtime} of the input folder and its sub-folders, which nodes list directly (LoadImage).
        self._input_dirs: dict[str, float] = {}
        self.base_path = ""
        self.models_dir = ""
        self.output_directory = ""
        self.input_directory = ""
        self.temp_directory = ""
        self.user_directory = ""
        self.configure(None)

    # ---- layout ----
    def configure(
        self,
        base_directory: str | os.PathLike | None = None,
        output_directory: str | os.PathLike | None = None,
        input_directory: str | os.PathLike | None = None,
        temp_directory: str | os.PathLike | None = None,
        user_directory: str | os.PathLike | None = None,
        extra_model_paths_config: Iterable[str | os.PathLike] | str | os.PathLike | None = None,
        create_directories: bool = False,
    ) -> None:
        """Reset every folder to the layout under ``base_directory`` and apply overrides.

        ``base_directory=None`` means the default workspace (see module docstring). Individual
        directory arguments override their default location. ``extra_model_paths_config`` is
        one or more extra_model_paths.yaml files (ComfyUI or A1111 form). The
        ``folder_names_and_paths`` dict object is kept (refilled) so references held by custom
        nodes stay valid.
        """
        with self._lock:
            base = _abs(base_directory) if base_directory is not None else str(default_base_directory())
            self.base_path = base
            self.models_dir = os.path.join(base, "models")
            # Model folders share the supported_pt_extensions set object, as in ComfyUI, so a
            # pack that adds an extension to it (".gguf") affects every model folder.
            fresh = {name: ([os.path.join(self.models_dir, d) for d in subdirs],
                            exts if exts is supported_pt_extensions else set(exts))
                     for name, subdirs, exts in _STANDARD_FOLDERS}
            fresh["custom_nodes"] = ([os.path.join(base, "custom_nodes")], set())
            # replace entries in place (no clear()) so a concurrent reader never misses a standard key
            fnp = self.folder_names_and_paths
            for name, value in fresh.items():
                dict.__setitem__(fnp, name, value)
            for name in [k for k in fnp if k not in fresh]:
                dict.pop(fnp, name, None)
            self.invalidate_cache()

            self.set_output_directory(output_directory if output_directory is not None else os.path.join(base, "output"))
            self.set_input_directory(input_directory if input_directory is not None else os.path.join(base, "input"))
            self.set_temp_directory(temp_directory if temp_directory is not None else os.path.join(base, "temp"))
            self.set_user_directory(user_directory if user_directory is not None else os.path.join(base, "user"))

            if extra_model_paths_config:
                if isinstance(extra_model_paths_config, (str, os.PathLike)):
                    extra_model_paths_config = [extra_model_paths_config]
                for cfg in extra_model_paths_config:
                    self.load_extra_path_config(cfg)

            if create_directories:
                self._create_directories()

    def _create_directories(self) -> None:
        for name, (paths, _exts) in list(self.folder_names_and_paths.items()):
            # Only the first (default) location of each folder; extra paths belong to someone else.
            if paths:
                os.makedirs(paths[0], exist_ok=True)
        for name, subdirs, _ in _STANDARD_FOLDERS:
            for d in subdirs:
                os.makedirs(os.path.join(self.models_dir, d), exist_ok=True)
        for d in (self.input_directory, self.output_directory, self.temp_directory, self.user_directory):
            os.makedirs(d, exist_ok=True)

    def get_models_directory(self) -> str:
        return self.models_dir

    def get_folder_paths(self, folder_name: str) -> list[str]:
        """A copy of the directories searched for ``folder_name`` (legacy names accepted)."""
        entry = self.folder_names_and_paths.get(folder_name)
        if entry is None:
            raise KeyError(f"unknown model folder {folder_name!r}")
        return list(entry[0])

    def add_model_folder_path(self, folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
        """Add a search directory for a folder; ``is_default`` puts it first (and where new files go)."""
        folder_name = map_legacy(folder_name)
        full_folder_path = os.fspath(full_folder_path)
        with self._lock:
            if folder_name in self.folder_names_and_paths:
                paths = self.folder_names_and_paths[folder_name][0]
                if full_folder_path in paths:
                    if is_default and paths[0] != full_folder_path:
                        paths.remove(full_folder_path)
                        paths.insert(0, full_folder_path)
                elif is_default:
                    paths.insert(0, full_folder_path)
                else:
                    paths.append(full_folder_path)
            else:
                self.folder_names_and_paths[folder_name] = ([full_folder_path], set())
            self.invalidate_cache(folder_name)

    def get_custom_nodes_directories(self) -> list[str]:
        return self.get_folder_paths("custom_nodes")

    def load_extra_path_config(self, yaml_path: str | os.PathLike) -> None:
        """Load an ``extra_model_paths.yaml``.

        Each top-level section (``comfyui:``, ``a111:``, anything) maps folder names to one or
        more newline-separated directories. ``base_path`` (relative to the yaml file's
        directory, ``~`` and ``$VARS`` expanded) prefixes relative entries; ``is_default:
        true`` makes the section's directories the first searched. Relative entries without a
        base_path are relative to the yaml file.
        """
        for folder_name, full, is_default in _read_extra_path_config(yaml_path):
            logger.info("Adding extra search path %s %s", folder_name, full)
            self.add_model_folder_path(folder_name, full, is_default)

    # ---- file listings ----
    def _cache_valid(self, folder_name: str) -> list[str] | None:
        entry = self.filename_list_cache.get(folder_name)
        if entry is None:
            return None
        files, dirs, _t = entry
        if self._cache_exts.get(folder_name) != frozenset(self.folder_names_and_paths[folder_name][1]):
            return None  # someone changed the folder's extension set
        for d, mtime in dirs.items():
            try:
                if os.path.getmtime(d) != mtime:
                    return None
            except OSError:
                return None
        # a search directory that did not exist before may have been created since
        for p in self.folder_names_and_paths[folder_name][0]:
            if p not in dirs and os.path.isdir(p):
                return None
        return files

    def get_filename_list(self, folder_name: str) -> list[str]:
        """Sorted, de-duplicated relative posix names of model files in a folder (all its paths).

        Cached per folder; the cache is dropped when any directory walked changes mtime
        (files added/removed) or a new folder path is added.
        """
        folder_name = map_legacy(folder_name)
        if folder_name not in self.folder_names_and_paths:
            return []
        with self._lock:
            cached = self._cache_valid(folder_name)
            if cached is not None:
                return list(cached)
            paths, exts = self.folder_names_and_paths[folder_name]
            seen: set[str] = set()
            dirs: dict[str, float] = {}
            for p in paths:
                files, d = recursive_search(p, excluded_dir_names=[".git"])
                seen.update(files)
                dirs.update(d)
            out = filter_files_extensions(seen, exts)
            self.filename_list_cache[folder_name] = (out, dirs, time.perf_counter())
            self._cache_exts[folder_name] = frozenset(exts)
            return list(out)

    def invalidate_cache(self, folder_name: str | None = None) -> None:
        with self._lock:
            if folder_name is None:
                self.filename_list_cache.clear()
                self._input_dirs.clear()
            else:
                self.filename_list_cache.pop(map_legacy(folder_name), None)
            self._listing_generation += 1

    def _input_dirs_now(self) -> dict[str, float]:
        root = self.input_directory
        dirs = [root]
        if os.path.isdir(root):
            with os.scandir(root) as entries:
                dirs += [e.path for e in entries if e.is_dir() and not e.name.startswith(".")]
        return _stat_dirs(dirs)

    def listing_generation(self) -> int:
        """A number that changes whenever a model folder or the input folder may have changed
        on disk since the previous call, for callers that derive data from file lists (the node
        registry's object_info). Costs one stat per directory behind the cached listings: stale
        listings are dropped here, so the next get_filename_list walks them again."""
        with self._lock:
            stale = [name for name in self.filename_list_cache if self._cache_valid(name) is None]
            for name in stale:
                self.filename_list_cache.pop(name, None)
            input_changed = (self.input_directory not in self._input_dirs
                             or _stat_dirs(self._input_dirs) != self._input_dirs)
            if input_changed:
                self._input_dirs.clear()
                self._input_dirs.update(self._input_dirs_now())
            if stale or input_changed:
                self._listing_generation += 1
            return self._listing_generation

    def get_full_path(self, folder_name: str, filename: str) -> str | None:
        """The first existing file ``filename`` in the folder's paths, or None.

        Names that try to leave the folder (``..``, absolute) give None. Symlinked model files
        are allowed (common for shared model stores).
        """
        folder_name = map_legacy(folder_name)
        entry = self.folder_names_and_paths.get(folder_name)
        if entry is None:
            return None
        parts = _relative_parts(filename)
        if parts is None:
            return None
        for base in entry[0]:
            full = os.path.join(base, *parts)
            if os.path.isfile(full):
                return full
            if os.path.islink(full):
                logger.warning("broken symlink for %s/%s: %s", folder_name, filename, full)
        return None

    def get_full_path_or_raise(self, folder_name: str, filename: str) -> str:
        """The file's path; a known model that is missing is downloaded first (comfyui.known_models)."""
        full = self.get_full_path(folder_name, filename)
        if full is None:
            from .known_models import fetch_missing

            full = fetch_missing(folder_name, filename)
        if full is None:
            raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
        return full

    # ---- input / output / temp / user directories ----
    def set_output_directory(self, path: str | os.PathLike) -> None:
        self.output_directory = _abs(path)

    def set_input_directory(self, path: str | os.PathLike) -> None:
        self.input_directory = _abs(path)

    def set_temp_directory(self, path: str | os.PathLike) -> None:
        self.temp_directory = _abs(path)

    def set_user_directory(self, path: str | os.PathLike) -> None:
        self.user_directory = _abs(path)

    def get_output_directory(self) -> str:
        return self.output_directory

    def get_input_directory(self) -> str:
        return self.input_directory

    def get_temp_directory(self) -> str:
        return self.temp_directory

    def get_user_directory(self) -> str:
        return self.user_directory

    def get_system_user_directory(self, name: str = "system") -> str:
        """``user/__<name>`` — per-install data that users must not reach through /userdata."""
        if not name or not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
            raise ValueError(f"invalid system user directory name: {name!r}")
        return os.path.join(self.user_directory, f"__{name}")

    def get_public_user_directory(self, user_id: str) -> str | None:
        """The directory of a normal user, or None for reserved (``__``-prefixed) or unsafe ids."""
        if not user_id or not isinstance(user_id, str) or user_id.startswith("__"):
            return None
        try:
            return str(safe_join(self.user_directory, user_id)) if "/" not in user_id else None
        except PathEscapeError:
            return None

    def get_directory_by_type(self, type_name: str) -> str | None:
        """``"input" | "output" | "temp"`` -> directory; anything else -> None."""
        return {"output": self.output_directory, "temp": self.temp_directory,
                "input": self.input_directory}.get(type_name)

    def get_input_subfolders(self) -> list[str]:
        """Relative posix paths of every directory under input/ (for upload targets)."""
        root = self.input_directory
        out: list[str] = []
        if not os.path.isdir(root):
            return out
        for dirpath, subdirs, _files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for d in subdirs:
                out.append(os.path.relpath(os.path.join(dirpath, d), root).replace(os.sep, "/"))
        return sorted(out)

    def annotated_filepath(self, name: str) -> tuple[str, str | None]:
        """Split ``"img.png [output]"`` into ``("img.png", <output dir>)``; no annotation -> None dir."""
        for suffix, kind in _ANNOTATIONS:
            if name.endswith(suffix):
                return name[: -len(suffix)].rstrip(" "), self.get_directory_by_type(kind)
        return name, None

    def get_annotated_filepath(self, name: str, default_dir: str | None = None) -> str:
        """Full path for an (optionally annotated) file name; default directory is input/.

        Raises :class:`PathEscapeError` when the name leaves its directory.
        """
        name, base_dir = self.annotated_filepath(name)
        if base_dir is None:
            base_dir = default_dir if default_dir is not None else self.input_directory
        return str(safe_join(base_dir, name))

    def exists_annotated_filepath(self, name: str) -> bool:
        try:
            return os.path.exists(self.get_annotated_filepath(name))
        except PathEscapeError:
            return False


def _read_extra_path_config(yaml_path: str | os.PathLike) -> Iterator[tuple[str, str, bool]]:
    """``(folder name, directory, is_default)`` for every entry of an extra_model_paths.yaml."""
    yaml_path = os.fspath(yaml_path)
    try:
        with open(yaml_path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"extra model paths config not found: {yaml_path}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"invalid YAML in extra model paths config {yaml_path}: {e}") from e
    if data is None:
        return
    if not isinstance(data, dict):
        raise ValueError(f"extra model paths config {yaml_path} must be a mapping of sections")
    yaml_dir = os.path.dirname(os.path.abspath(yaml_path))
    for section, conf in data.items():
        if conf is None:
            continue
        if not isinstance(conf, dict):
            raise ValueError(f"section {section!r} in {yaml_path} must be a mapping")
        conf = dict(conf)
        base = conf.pop("base_path", None)
        if base is not None:
            base = os.path.expandvars(os.path.expanduser(str(base)))
            if not os.path.isabs(base):
                base = os.path.join(yaml_dir, base)
            base = os.path.normpath(base)
        is_default = bool(conf.pop("is_default", False))
        conf.pop("download_model_base", None)
        for folder_name, value in conf.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple)):
                entries = [str(v) for v in value]
            else:
                entries = str(value).split("\n")
            for entry in entries:
                entry = os.path.expandvars(os.path.expanduser(entry.strip()))
                if not entry:
                    continue
                if os.path.isabs(entry):
                    full = entry
                elif base is not None:
                    full = os.path.join(base, entry)
                else:
                    full = os.path.join(yaml_dir, entry)
                yield folder_name, os.path.normpath(full), is_default


# --------------------------------------------------------------------------------------------
# Save paths
# --------------------------------------------------------------------------------------------

def _compute_vars(text: str, width: int, height: int) -> str:
    now = time.localtime()
    repl = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.tm_year),
        "%month%": str(now.tm_mon).zfill(2),
        "%day%": str(now.tm_mday).zfill(2),
        "%hour%": str(now.tm_hour).zfill(2),
        "%minute%": str(now.tm_min).zfill(2),
        "%second%": str(now.tm_sec).zfill(2),
    }
    for k, v in repl.items():
        text = text.replace(k, v)
    return text


def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0, image_height: int = 0):
    """ComfyUI's save-path helper.

    Returns ``(full_output_folder, filename, counter, subfolder, filename_prefix)``; callers
    write ``f"{filename}_{counter:05}_.png"``. ``counter`` is one more than the highest existing
    ``<filename>_<NNNNN>_*`` in the folder (1 when none). ``%width%``, ``%height%``, ``%year%``,
    ``%month%``, ``%day%``, ``%hour%``, ``%minute%``, ``%second%`` are substituted. Raises
    :class:`PathEscapeError` for prefixes that would leave ``output_dir``.
    """
    if "\x00" in filename_prefix:
        raise PathEscapeError("filename_prefix contains a NUL byte")
    if "%" in filename_prefix:
        filename_prefix = _compute_vars(filename_prefix, image_width, image_height)
    norm = os.path.normpath(filename_prefix.replace("\\", "/"))
    subfolder = os.path.dirname(norm)
    filename = os.path.basename(norm)
    output_dir = os.path.abspath(output_dir)
    full_output_folder = os.path.abspath(os.path.join(output_dir, subfolder))
    if os.path.isabs(subfolder) or os.path.commonpath((output_dir, full_output_folder)) != output_dir:
        raise PathEscapeError(
            "Saving image outside the output folder is not allowed. "
            f"full_output_folder: {full_output_folder}, output_dir: {output_dir}"
        )
    if not filename or filename in (".", ".."):
        raise ValueError(f"filename_prefix has no file name: {filename_prefix!r}")

    prefix_len = len(filename)
    counter = 0
    try:
        entries = os.listdir(full_output_folder)
    except FileNotFoundError:
        os.makedirs(full_output_folder, exist_ok=True)
        entries = []
    for entry in entries:
        # <filename>_<digits>_... ; compare case-insensitively where the OS does
        if len(entry) <= prefix_len + 1 or entry[prefix_len] != "_":
            continue
        if os.path.normcase(entry[:prefix_len]) != os.path.normcase(filename):
            continue
        digits = entry[prefix_len + 1:].split("_")[0]
        if digits.isdigit():
            counter = max(counter, int(digits))
    return full_output_folder, filename, counter + 1, subfolder, filename_prefix


class _CacheHelper:
    """ComfyUI's ``folder_paths.cache_helper``; kept for API compatibility (listing is
    mtime-cached already)."""

    def __init__(self):
        self.active = False

    def __enter__(self):
        self.active = True
        return self

    def __exit__(self, *exc):
        self.active = False

    def clear(self):
        invalidate_cache()


cache_helper = _CacheHelper()


# --------------------------------------------------------------------------------------------
# The module-level API (ComfyUI's folder_paths): views onto the active runtime's Folders
# --------------------------------------------------------------------------------------------

def active_folders() -> Folders:
    """The folder map of the active runtime (see :mod:`comfyui.runtime`)."""
    return runtime.current().folders


_view = functools.partial(runtime.method_view, "folders", Folders)

configure = _view("configure")
get_models_directory = _view("get_models_directory")
get_folder_paths = _view("get_folder_paths")
add_model_folder_path = _view("add_model_folder_path")
get_custom_nodes_directories = _view("get_custom_nodes_directories")
load_extra_path_config = _view("load_extra_path_config")
get_filename_list = _view("get_filename_list")
invalidate_cache = _view("invalidate_cache")
listing_generation = _view("listing_generation")
get_full_path = _view("get_full_path")
get_full_path_or_raise = _view("get_full_path_or_raise")
set_output_directory = _view("set_output_directory")
set_input_directory = _view("set_input_directory")
set_temp_directory = _view("set_temp_directory")
set_user_directory = _view("set_user_directory")
get_output_directory = _view("get_output_directory")
get_input_directory = _view("get_input_directory")
get_temp_directory = _view("get_temp_directory")
get_user_directory = _view("get_user_directory")
get_system_user_directory = _view("get_system_user_directory")
get_public_user_directory = _view("get_public_user_directory")
get_directory_by_type = _view("get_directory_by_type")
get_input_subfolders = _view("get_input_subfolders")
annotated_filepath = _view("annotated_filepath")
get_annotated_filepath = _view("get_annotated_filepath")
exists_annotated_filepath = _view("exists_annotated_filepath")

# Module attributes ComfyUI's folder_paths has, read from the active runtime at each access.
_ATTRIBUTES = frozenset({"folder_names_and_paths", "filename_list_cache", "base_path", "models_dir",
                         "output_directory", "input_directory", "temp_directory", "user_directory"})

__getattr__ = runtime.attribute_view(__name__, "folders", _ATTRIBUTES)
