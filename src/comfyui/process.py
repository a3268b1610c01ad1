"""Process-wide settings, applied once where a process that comfyui owns starts.

The ``comfyui`` command (server and ``--workflows`` batch mode) calls :func:`configure_process`
first thing, and the server calls :func:`startup_complete` once its modules, nodes and routes
are loaded. Nothing else in the package changes process-wide settings; per-call code (model
loading, prompt execution) never does.

What they change:

* glibc's allocator keeps freed memory in the process heap (Linux, with ``--cpu``). CPU
  inference of a UNet frees and re-allocates hundreds of MB per step; by default glibc maps
  every block of 32 MiB or more on its own and unmaps it when freed (oneDNN's reordered weights
  of the large convolutions: ~570 MB of page faults per SD1.5 step), and gives the heap's top
  back to the kernel, so each step pays a page fault plus kernel zeroing per 4 KiB page. The
  cost: memory freed later (a model unloaded) stays with the process for its next allocations.
  GPU processes keep the default allocator (their CPU memory peaks while loading models, and
  should go back). ``COMFYUI_CPU_KEEP_HEAP=0`` leaves the allocator alone.
* The objects loaded by start-up (~90k: modules, node definitions, routes) live as long as the
  server, so :func:`startup_complete` moves them out of the cyclic collector's reach
  (``gc.freeze()``): its full passes would otherwise rescan all of them (~85 ms each). The
  collector's thresholds stay Python's: with start-up frozen, a cold 5,000-node prompt spends
  about 3 % of its CPU time in the collector and no full pass.

An embedded :class:`comfyui.Comfy` runs inside someone else's process (a notebook, a web
service) and changes none of this: how that process's allocator returns memory and which of its
objects the collector scans are its owner's choices. A process dedicated to running workflows
on the CPU can call ``configure_process(cpu=True)`` at its start for the speed of the
``comfyui`` command.
"""
from __future__ import annotations

import gc
import logging
import os
import sys

log = logging.getLogger(__name__)

_configured = False


def configure_process(cpu: bool = False, deterministic: bool = False) -> None:
    """Apply the settings of a process comfyui owns (see the module docstring); ``cpu``: it
    runs its models on the CPU; ``deterministic`` (``--deterministic``): torch uses deterministic
    algorithms where it has them (and warns where it has none), as ComfyUI does. Later calls do
    nothing."""
    global _configured
    if _configured:
        return
    _configured = True
    import faulthandler
    import sys

    faulthandler.enable(sys.stderr)  # a fatal signal (SIGBUS, SIGSEGV) leaves its tracebacks in the log
    if cpu and os.environ.get("COMFYUI_CPU_KEEP_HEAP", "1") != "0":
        _keep_freed_memory_in_heap()
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for it
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)


def startup_complete() -> None:
    """The server's start-up is loaded: freeze it out of the collector's passes, in a process
    configured by :func:`configure_process` only (not in a host that embeds the server)."""
    if _configured:
        gc.freeze()  # no collection first: start-up leaves only a few dozen objects of garbage


def _keep_freed_memory_in_heap() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): nothing to tune
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    # no block gets its own mapping (whatever its size), and only more than 512 MiB free at the
    # heap's top is given back
    ok = libc.mallopt(m_mmap_max, 0) == 1
    ok = libc.mallopt(m_trim_threshold, 512 * 1024 * 1024) == 1 and ok
    if not ok:
        log.warning("could not tune glibc's allocator for CPU inference")
    return ok
