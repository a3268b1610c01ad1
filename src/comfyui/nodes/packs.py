"""Install, update, remove, disable and enable custom node packs (``comfyui node`` and the
frontend's Manager dialog both use :class:`PackManager`).

A pack comes from one of three sources:

* the Comfy registry, by id: ``GET {registry}/nodes/{id}/install[?version=V]`` answers
  ``{"downloadUrl": ..., "version": ...}``; the zip is unpacked into ``custom_nodes/<id>/``
  (the registry API comfy-cli and ComfyUI-Manager use; ``GET {registry}/nodes/{id}`` gives the
  pack's metadata and ``latest_version``);
* a git URL (``https://``, ``git@``, ``file://``, ``*.git``): cloned into
  ``custom_nodes/<repository name>/``;
* a pip package (``pip:NAME`` or any pip requirement/wheel path with ``--pip``) that exposes the
  ``comfyui.custom_nodes`` entry point, installed into the target interpreter's environment.

Folder packs record where they came from in ``.comfyui-pack.json`` (source, id/url, version),
which ``update`` and ``list`` read; registry packs also get ComfyUI-Manager's ``.tracking``, and
packs the Manager or comfy-cli installed (``.tracking`` + ``pyproject.toml``, or ``.git``) are
recognised without the marker, so both tools manage the same folders. A pack's ``requirements.txt`` is installed with pip into the
target interpreter's environment unless ``no_deps``. Disabling moves a pack to
``custom_nodes/.disabled/`` (as ComfyUI-Manager does); enabling moves it back.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from typing import Callable

log = logging.getLogger(__name__)

DEFAULT_REGISTRY_URL = "https://api.comfy.org"
ENTRY_POINT_GROUP = "comfyui.custom_nodes"
MARKER = ".comfyui-pack.json"
TRACKING = ".tracking"
DISABLED_DIR = ".disabled"
_GIT_URL = re.compile(r"^(https?://|git@|ssh://|file://|git://)|\.git/?$")
_PACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class PackError(Exception):
    """A pack operation failed; the message says why and what to do."""


@dataclass
class PackInfo:
    name: str                  # folder name, or the pip distribution name
    source: str                # "registry" | "git" | "pip" | "folder" (copied in by hand)
    enabled: bool
    version: str | None = None
    id: str | None = None      # registry id
    url: str | None = None     # git URL
    path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def is_git_url(spec: str) -> bool:
    return bool(_GIT_URL.search(spec))


def _repo_name(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return name[:-4] if name.endswith(".git") else name


def _check_name(name: str, what: str) -> str:
    if not _PACK_NAME.match(name or ""):
        raise PackError(f"{what} {name!r} is not a valid pack name (letters, digits, '.', '_', '-')")
    return name


class RegistryClient:
    """The Comfy registry's read API (``GET /nodes/{id}``, ``GET /nodes/{id}/install``)."""

    def __init__(self, base_url: str = DEFAULT_REGISTRY_URL, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get_json(self, path: str, params: dict | None = None) -> dict:
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise PackError(f"the registry at {self.base_url} has no node pack matching {path} "
                                f"({url} answered 404)") from None
            raise PackError(f"the registry at {self.base_url} answered {e.code} for {url}") from None
        except (urllib.error.URLError, OSError) as e:
            raise PackError(f"cannot reach the registry at {self.base_url}: {getattr(e, 'reason', e)} "
                            f"(set --registry-url or COMFYUI_REGISTRY_URL)") from None
        except ValueError:
            raise PackError(f"the registry answered something that is not JSON for {url}") from None

    def node(self, node_id: str) -> dict:
        return self._get_json(f"/nodes/{urllib.parse.quote(node_id)}")

    def install_info(self, node_id: str, version: str | None = None) -> dict:
        info = self._get_json(f"/nodes/{urllib.parse.quote(node_id)}/install",
                              {"version": version} if version else None)
        if not info.get("downloadUrl"):
            raise PackError(f"the registry gave no downloadUrl for {node_id}"
                            + (f" version {version}" if version else ""))
        return info

    def download(self, url: str, dest: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp, open(dest, "wb") as f:
                shutil.copyfileobj(resp, f)
        except (urllib.error.URLError, OSError) as e:
            raise PackError(f"cannot download {url}: {getattr(e, 'reason', e)}") from None


class PackManager:
    """Packs of one ``custom_nodes`` folder, with requirements and pip packs going to the
    environment of ``python`` (default: the running interpreter)."""

    def __init__(self, custom_nodes_dir: str, registry_url: str = DEFAULT_REGISTRY_URL,
                 python: str | None = None, echo: Callable[[str], None] | None = None):
        self.root = os.path.abspath(custom_nodes_dir)
        self.registry = RegistryClient(registry_url)
        self.python = python or sys.executable
        self.echo = echo or (lambda msg: log.info("%s", msg))

    # -- locations -------------------------------------------------------------------------
    @property
    def disabled_root(self) -> str:
        return os.path.join(self.root, DISABLED_DIR)

    def _enabled_path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _disabled_path(self, name: str) -> str:
        return os.path.join(self.disabled_root, name)

    def _find(self, name: str) -> tuple[str, bool] | None:
        """(path, enabled) of the folder pack ``name`` (folder name or registry id)."""
        for pack in self.folder_packs():
            if name in (pack.name, pack.id):
                return pack.path, pack.enabled
        return None

    def _refuse_existing(self, name: str) -> None:
        found = self._find(name)
        if found:
            path, enabled = found
            hint = "`comfyui node update`" if enabled else "`comfyui node enable`"
            raise PackError(f"{name} is already installed{'' if enabled else ' (disabled)'} at {path}; use {hint}")

    # -- listing ---------------------------------------------------------------------------
    def folder_packs(self) -> list[PackInfo]:
        out = []
        for folder, enabled in ((self.root, True), (self.disabled_root, False)):
            try:
                entries = sorted(os.listdir(folder))
            except FileNotFoundError:
                continue
            for entry in entries:
                path = os.path.join(folder, entry)
                if entry.startswith((".", "__")) or not os.path.isdir(path):
                    continue
                marker = _read_marker(path) or _foreign_marker(path)
                out.append(PackInfo(name=entry, source=marker.get("source", "folder"), enabled=enabled,
                                    version=marker.get("version"), id=marker.get("id"), url=marker.get("url"),
                                    path=path))
        return out

    def _pip_packs(self) -> list[PackInfo]:
        script = ("import importlib.metadata as m, json\n"
                  "seen = {}\n"
                  "for d in m.distributions():\n"
                  f"    if any(e.group == {ENTRY_POINT_GROUP!r} for e in d.entry_points):\n"
                  "        seen[d.metadata['Name']] = d.version\n"
                  "print(json.dumps(seen))\n")
        proc = subprocess.run([self.python, "-c", script], capture_output=True, text=True)
        if proc.returncode != 0:
            raise PackError(f"cannot list the packages of {self.python}: {proc.stderr.strip()}")
        return [PackInfo(name=n, source="pip", enabled=True, version=v)
                for n, v in sorted(json.loads(proc.stdout).items())]

    def list(self) -> list[PackInfo]:
        return self.folder_packs() + self._pip_packs()

    # -- install ---------------------------------------------------------------------------
    def install(self, spec: str, *, version: str | None = None, no_deps: bool = False,
                pip: bool = False) -> PackInfo:
        """Install from a registry id, a git URL or (``pip=True`` / ``pip:NAME``) pip."""
        spec = spec.strip()
        if not spec:
            raise PackError("name a registry id, a git URL or a pip package to install")
        if pip or spec.startswith("pip:"):
            return self._install_pip(spec[4:] if spec.startswith("pip:") else spec, no_deps)
        if is_git_url(spec):
            return self._install_git(spec, version, no_deps)
        return self._install_registry(spec, version, no_deps)

    def _install_registry(self, node_id: str, version: str | None, no_deps: bool) -> PackInfo:
        _check_name(node_id, "registry id")
        self._refuse_existing(node_id)
        info = self.registry.install_info(node_id, version)
        got_version = str(info.get("version") or version or "")
        self.echo(f"downloading {node_id} {got_version} from {info['downloadUrl']}")
        target = self._enabled_path(node_id)
        self._unpack_registry_zip(info["downloadUrl"], target, node_id)
        _write_marker(target, {"source": "registry", "id": node_id, "version": got_version or None})
        _write_tracking(target)
        self.echo(f"installed {node_id} {got_version} into {target}")
        self._install_requirements(target, no_deps)
        return PackInfo(name=node_id, source="registry", enabled=True, version=got_version or None,
                        id=node_id, path=target)

    def _unpack_registry_zip(self, url: str, target: str, node_id: str) -> None:
        os.makedirs(self.root, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".install-") as tmp:
            archive = os.path.join(tmp, "pack.zip")
            self.registry.download(url, archive)
            staging = os.path.join(tmp, "pack")
            try:
                with zipfile.ZipFile(archive) as z:
                    for member in z.namelist():  # no member may land outside the pack folder
                        dest = os.path.realpath(os.path.join(staging, member))
                        if not dest.startswith(os.path.realpath(staging) + os.sep) and dest != os.path.realpath(staging):
                            raise PackError(f"the archive of {node_id} has a path outside the pack: {member}")
                    z.extractall(staging)
            except zipfile.BadZipFile:
                raise PackError(f"the archive downloaded for {node_id} from {url} is not a zip file") from None
            os.replace(staging, target)

    def _install_git(self, url: str, ref: str | None, no_deps: bool) -> PackInfo:
        name = _check_name(_repo_name(url), "repository name")
        self._refuse_existing(name)
        target = self._enabled_path(name)
        os.makedirs(self.root, exist_ok=True)
        self.echo(f"cloning {url} into {target}")
        self._git("clone", "--recursive", url, target, what=f"cannot clone {url}")
        if ref:
            self._git("-C", target, "checkout", ref, what=f"cannot check out {ref} in {name}",
                      cleanup=target)
        commit = self._git("-C", target, "rev-parse", "--short", "HEAD", what="cannot read the commit").strip()
        _write_marker(target, {"source": "git", "url": url, "version": commit})
        self.echo(f"installed {name} ({commit}) into {target}")
        self._install_requirements(target, no_deps)
        return PackInfo(name=name, source="git", enabled=True, version=commit, url=url, path=target)

    def _install_pip(self, requirement: str, no_deps: bool) -> PackInfo:
        before = {p.name for p in self._pip_packs()}
        self.echo(f"installing {requirement} with pip into {self.python}'s environment")
        self._pip("install", *(["--no-deps"] if no_deps else []), requirement,
                  what=f"pip could not install {requirement}")
        after = self._pip_packs()
        new = [p for p in after if p.name not in before]
        if not new:
            # already there (an upgrade) or not a pack at all
            match = [p for p in after if _norm(p.name) == _norm(_requirement_name(requirement))]
            if match:
                return match[0]
            raise PackError(f"{requirement} was installed but exposes no '{ENTRY_POINT_GROUP}' entry point, "
                            f"so it is not a custom node pack; remove it with `pip uninstall`")
        self.echo(f"installed {', '.join(f'{p.name} {p.version}' for p in new)}")
        return new[0]

    # -- requirements / subprocesses -------------------------------------------------------
    def _install_requirements(self, pack_dir: str, no_deps: bool) -> None:
        req = os.path.join(pack_dir, "requirements.txt")
        if not os.path.isfile(req):
            return
        if no_deps:
            self.echo(f"not installing {req} (--no-deps); install it yourself with "
                      f"`{self.python} -m pip install -r {req}`")
            return
        self.echo(f"installing the pack's requirements ({req}) with pip into {self.python}'s environment")
        self._pip("install", "-r", req, cwd=pack_dir,
                  what=f"the pack is installed at {pack_dir} but pip could not install its requirements.txt")

    def _pip(self, *args: str, what: str, cwd: str | None = None) -> str:
        cmd = [sys.executable, "-m", "pip"]
        if os.path.abspath(self.python) != os.path.abspath(sys.executable):
            cmd += ["--python", self.python]
        proc = subprocess.run(cmd + ["--disable-pip-version-check", *args], capture_output=True, text=True, cwd=cwd)
        if proc.returncode != 0:
            raise PackError(f"{what}:\n{(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    def _git(self, *args: str, what: str, cleanup: str | None = None) -> str:
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
        try:
            proc = subprocess.run(["git", *args], capture_output=True, text=True, env=env)
        except FileNotFoundError:
            raise PackError("git is not installed; install git to install packs from git URLs") from None
        if proc.returncode != 0:
            if cleanup:
                shutil.rmtree(cleanup, ignore_errors=True)
            raise PackError(f"{what}: {proc.stderr.strip()}")
        return proc.stdout

    # -- uninstall / update / disable / enable ---------------------------------------------
    def uninstall(self, name: str) -> PackInfo:
        found = self._find(name)
        if found:
            path, enabled = found
            info = next(p for p in self.folder_packs() if p.path == path)
            shutil.rmtree(path)
            self.echo(f"removed {info.name} ({path})")
            return info
        pip_pack = self._pip_pack(name)
        if pip_pack:
            self._pip("uninstall", "-y", pip_pack.name, what=f"pip could not uninstall {pip_pack.name}")
            self.echo(f"uninstalled {pip_pack.name} {pip_pack.version}")
            return pip_pack
        raise self._not_installed(name)

    def _pip_pack(self, name: str) -> PackInfo | None:
        return next((p for p in self._pip_packs() if _norm(p.name) == _norm(name)), None)

    def _not_installed(self, name: str) -> PackError:
        return PackError(f"{name} is not installed (see `comfyui node list`)")

    def update(self, name: str, *, version: str | None = None, no_deps: bool = False) -> tuple[PackInfo, str | None]:
        """-> (the pack now, the version before or None when it was already current)."""
        found = self._find(name)
        if not found:
            pip_pack = self._pip_pack(name)
            if not pip_pack:
                raise self._not_installed(name)
            self._pip("install", "--upgrade", *(["--no-deps"] if no_deps else []), pip_pack.name,
                      what=f"pip could not update {pip_pack.name}")
            now = self._pip_pack(name) or pip_pack
            return now, (pip_pack.version if now.version != pip_pack.version else None)
        path, enabled = found
        info = next(p for p in self.folder_packs() if p.path == path)
        if info.source == "registry":
            wanted = self.registry.install_info(info.id or info.name, version)
            new_version = str(wanted.get("version") or "")
            if new_version and new_version == info.version:
                return info, None
            tmp_target = path + ".updating"
            shutil.rmtree(tmp_target, ignore_errors=True)
            self._unpack_registry_zip(wanted["downloadUrl"], tmp_target, info.name)
            _write_marker(tmp_target, {"source": "registry", "id": info.id or info.name,
                                       "version": new_version or None})
            _write_tracking(tmp_target)
            shutil.rmtree(path)
            os.replace(tmp_target, path)
            self.echo(f"updated {info.name} {info.version} -> {new_version}")
        elif info.source == "git":
            old = info.version
            if version:
                self._git("-C", path, "fetch", "--tags", "origin", what=f"cannot fetch {info.url}")
                self._git("-C", path, "checkout", version, what=f"cannot check out {version}")
            else:
                self._git("-C", path, "pull", "--ff-only", what=f"cannot update {info.name} from {info.url}")
            new_version = self._git("-C", path, "rev-parse", "--short", "HEAD", what="cannot read the commit").strip()
            _write_marker(path, {"source": "git", "url": info.url, "version": new_version})
            if new_version == old:
                return info, None
            self.echo(f"updated {info.name} {old} -> {new_version}")
        else:
            raise PackError(f"{info.name} was not installed by comfyui node (no {MARKER}), so its source is "
                            f"unknown; update it by hand")
        self._install_requirements(path, no_deps)
        now = next(p for p in self.folder_packs() if p.name == info.name)
        return now, info.version

    def disable(self, name: str) -> PackInfo:
        found = self._find(name)
        if not found:
            if self._pip_pack(name):
                raise PackError(f"{name} is a pip package; disable it with --blacklist-custom-nodes {name} "
                                f"or uninstall it")
            raise self._not_installed(name)
        path, enabled = found
        if not enabled:
            raise PackError(f"{name} is already disabled ({path})")
        target = self._disabled_path(os.path.basename(path))
        if os.path.exists(target):
            raise PackError(f"cannot disable {name}: {target} exists (an older disabled copy); remove it first")
        os.makedirs(self.disabled_root, exist_ok=True)
        os.replace(path, target)
        self.echo(f"disabled {name} (moved to {target})")
        return next(p for p in self.folder_packs() if p.path == target)

    def enable(self, name: str) -> PackInfo:
        found = self._find(name)
        if not found:
            raise self._not_installed(name)
        path, enabled = found
        if enabled:
            raise PackError(f"{name} is already enabled ({path})")
        target = self._enabled_path(os.path.basename(path))
        if os.path.exists(target):
            raise PackError(f"cannot enable {name}: {target} exists; remove one of the two copies")
        os.replace(path, target)
        self.echo(f"enabled {name} (moved to {target})")
        return next(p for p in self.folder_packs() if p.path == target)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    base = os.path.basename(requirement)
    if base.endswith((".whl", ".tar.gz", ".zip")):
        return base.split("-", 1)[0]
    return re.split(r"[<>=!~\[; @]", requirement, 1)[0]


def _read_marker(path: str) -> dict:
    try:
        with open(os.path.join(path, MARKER), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _foreign_marker(path: str) -> dict:
    """What a pack installed by ComfyUI-Manager or comfy-cli says about itself: a registry pack
    has ``.tracking`` (its file list) and ``pyproject.toml`` ([project] name = the registry id);
    a git pack has ``.git``."""
    if os.path.isfile(os.path.join(path, TRACKING)):
        try:
            import tomllib

            with open(os.path.join(path, "pyproject.toml"), "rb") as f:
                project = tomllib.load(f).get("project", {})
            if project.get("name"):
                return {"source": "registry", "id": str(project["name"]),
                        "version": str(project["version"]) if project.get("version") else None}
        except (OSError, ValueError):
            pass
    if os.path.exists(os.path.join(path, ".git")):
        def git(*args: str) -> str | None:
            proc = subprocess.run(["git", "-C", path, *args], capture_output=True, text=True)
            return proc.stdout.strip() or None if proc.returncode == 0 else None

        return {"source": "git", "url": git("config", "--get", "remote.origin.url"),
                "version": git("rev-parse", "--short", "HEAD")}
    return {}


def _write_tracking(path: str) -> None:
    """ComfyUI-Manager's ``.tracking``: the pack's files, so the Manager knows it as a registry
    pack (and which files an update may replace)."""
    files = []
    for root, _dirs, names in os.walk(path):
        for name in names:
            files.append(os.path.relpath(os.path.join(root, name), path).replace(os.sep, "/"))
    with open(os.path.join(path, TRACKING), "w", encoding="utf-8") as f:
        f.write("\n".join(sorted(files)) + "\n")


def _write_marker(path: str, data: dict) -> None:
    with open(os.path.join(path, MARKER), "w", encoding="utf-8") as f:
        json.dump({k: v for k, v in data.items() if v is not None}, f, indent=1)
