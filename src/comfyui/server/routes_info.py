"""Server information routes: ``/object_info`` (the node definitions, with the model file
lists on disk now), ``/features``, ``/system_stats``,
``/embeddings``, ``/models`` and ``/models/{folder}`` (frontend contract §2.1, §2.2)."""
from __future__ import annotations

import importlib.metadata as md
import logging
import os
import re
import shutil
import subprocess
import sys
import time

from aiohttp import web

from ..redact import redacted_argv  # noqa: F401 - also imported from here
from .context import ServerContext, add_route, error_response, json_response

log = logging.getLogger(__name__)


class InfoRoutes:
    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.engine = ctx.engine
        self._versions_cache: dict | None = None
        self._gpu_cache: tuple[float, list] | None = None

    def _argv(self) -> list[str]:
        """sys.argv, plus --enable-manager when the manager was enabled by the environment or a
        config file: the frontend shows its Manager only when argv names the flag."""
        argv = redacted_argv(sys.argv)
        if getattr(self.ctx.config, "enable_manager", False) and "--enable-manager" not in argv:
            argv.append("--enable-manager")
        return argv

    # ------------------------------------------------------------------ object_info
    async def get_object_info(self, request: web.Request) -> web.Response:
        return web.Response(body=self.engine.registry.object_info_json(), content_type="application/json")

    async def get_object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        node = self.engine.registry.get(name)
        if node is None:
            return json_response({})
        try:
            self.engine.registry.refresh_inputs([name])  # file lists as they are on disk now, as upstream
            info = node.object_info()
        except Exception:  # noqa: BLE001
            log.exception("object_info failed for %s", name)
            return json_response({})
        return json_response({name: info})

    # ------------------------------------------------------------------ misc
    async def get_features(self, request: web.Request) -> web.Response:
        return json_response(self.ctx.feature_flags)

    async def get_embeddings(self, request: web.Request) -> web.Response:
        from comfyui import paths
        names = paths.get_filename_list("embeddings")
        return json_response([os.path.splitext(n)[0] for n in names])

    async def get_models(self, request: web.Request) -> web.Response:
        from comfyui import paths
        return json_response(list(paths.folder_names_and_paths.keys()))

    async def get_models_folder(self, request: web.Request) -> web.Response:
        from comfyui import paths
        folder = request.match_info["folder"]
        if folder not in paths.folder_names_and_paths:
            return error_response(f"Unknown model folder: {folder}", status=404)
        return json_response(paths.get_filename_list(folder))

    async def get_system_stats(self, request: web.Request) -> web.Response:
        return json_response(self.system_stats())

    def system_stats(self) -> dict:
        import psutil
        vm = psutil.virtual_memory()
        versions = self._versions()
        return {
            "system": {
                "os": sys.platform,
                "ram_total": vm.total,
                "ram_free": vm.available,
                "comfyui_version": versions["comfyui"],
                "required_frontend_version": versions["required_frontend"],
                "installed_frontend_version": versions["installed_frontend"],
                "installed_templates_version": versions["installed_templates"],
                "required_templates_version": versions["required_templates"],
                "python_version": sys.version,
                "pytorch_version": versions["torch"],
                "embedded_python": os.path.split(os.path.split(sys.executable)[0])[1] == "python_embeded",
                "argv": self._argv(),
                "comfy_package_versions": versions["packages"],
            },
            "devices": self._devices(),
        }

    def _versions(self) -> dict:
        if self._versions_cache is not None:
            return self._versions_cache

        def version(dist: str) -> str | None:
            try:
                return md.version(dist)
            except md.PackageNotFoundError:
                return None

        required: dict[str, str] = {}
        try:
            for req in md.requires("comfyui") or []:
                m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:==|>=|~=)\s*([0-9][^;,\s]*)", req)
                if m and ";" not in req.split(m.group(2), 1)[1][:1]:
                    required[m.group(1).lower().replace("_", "-")] = m.group(2)
        except md.PackageNotFoundError:
            pass
        import comfyui
        frontend_installed = version("comfyui-frontend-package")
        packages = []
        for dist in ("comfyui-frontend-package", "comfyui-workflow-templates", "comfyui-embedded-docs"):
            inst = version(dist)
            req = required.get(dist)
            if inst is not None or req is not None:
                packages.append({"name": dist, "installed": inst or "", "required": req or inst or ""})
        self._versions_cache = {
            "comfyui": getattr(comfyui, "__version__", "0.0.0"),
            "required_frontend": required.get("comfyui-frontend-package") or frontend_installed or "",
            "installed_frontend": frontend_installed or "",
            "installed_templates": version("comfyui-workflow-templates") or "",
            "required_templates": required.get("comfyui-workflow-templates") or "",
            "torch": version("torch") or "",
            "packages": packages,
        }
        return self._versions_cache

    def _devices(self) -> list[dict]:
        torch = sys.modules.get("torch")
        if torch is not None:
            try:
                return _torch_devices(torch)
            except Exception:  # noqa: BLE001
                pass
        now = time.monotonic()
        if self._gpu_cache is None or now - self._gpu_cache[0] > 5.0:
            self._gpu_cache = (now, _nvidia_smi_devices())
        if self._gpu_cache[1]:
            return self._gpu_cache[1]
        import psutil
        vm = psutil.virtual_memory()
        return [{"name": "cpu", "type": "cpu", "index": None, "vram_total": vm.total,
                 "vram_free": vm.available, "torch_vram_total": 0, "torch_vram_free": 0}]


def _torch_devices(torch) -> list[dict]:
    if torch.cuda.is_available():
        out = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            stats = torch.cuda.memory_stats(i)
            reserved = stats.get("reserved_bytes.all.current", 0)
            active = stats.get("active_bytes.all.current", 0)
            out.append({"name": f"cuda:{i} {torch.cuda.get_device_name(i)}", "type": "cuda", "index": i,
                        "vram_total": total, "vram_free": free, "torch_vram_total": reserved,
                        "torch_vram_free": reserved - active})
        return out
    raise RuntimeError("no cuda")


def _nvidia_smi_devices() -> list[dict]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        res = subprocess.run([exe, "--query-gpu=index,name,memory.total,memory.free",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.SubprocessError):
        return []
    out = []
    for line in res.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            idx, total, free = int(parts[0]), int(parts[2]) * 1024 * 1024, int(parts[3]) * 1024 * 1024
        except ValueError:
            continue
        out.append({"name": f"cuda:{idx} {parts[1]}", "type": "cuda", "index": idx, "vram_total": total,
                    "vram_free": free, "torch_vram_total": 0, "torch_vram_free": 0})
    return out


def setup(app: web.Application, ctx: ServerContext) -> None:
    r = InfoRoutes(ctx)
    add_route(app, "GET", "/object_info", r.get_object_info)
    add_route(app, "GET", "/object_info/{node_class}", r.get_object_info_node)
    add_route(app, "GET", "/features", r.get_features)
    add_route(app, "GET", "/system_stats", r.get_system_stats)
    add_route(app, "GET", "/embeddings", r.get_embeddings)
    add_route(app, "GET", "/models", r.get_models)
    add_route(app, "GET", "/models/{folder}", r.get_models_folder)
