"""Reading model files: ``.safetensors`` (memory-mapped unless ``--disable-mmap``) and
``.ckpt/.pt/.pth/.bin`` pickles with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import json
import logging
import os
import pickle
import struct
from typing import Any

import torch

from . import memory, ops

log = logging.getLogger(__name__)


class ModelFileError(ValueError):
    """A model file that cannot be read or whose contents are not understood."""


def safetensors_header(path: str) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor names, dtypes, shapes, __metadata__)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ModelFileError(f"{path}: too short to be a safetensors file")
        n = struct.unpack("<Q", raw)[0]
        if n > 100 * 1024 * 1024:
            raise ModelFileError(f"{path}: implausible safetensors header size {n}")
        return json.loads(f.read(n))


def load_torch_file(path: str, safe_load: bool = True, device: torch.device | str | None = None,
                    return_metadata: bool = False) -> Any:
    """Load a state dict. Pickled files are only read with ``weights_only=True``: a pickle
    that would run code is refused with :class:`ModelFileError`."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    metadata = None
    if path.lower().endswith((".safetensors", ".sft")):
        import safetensors.torch
        try:
            if memory.args.get("disable_mmap"):
                with open(path, "rb") as f:
                    sd = safetensors.torch.load(f.read())
                if device.type != "cpu":
                    sd = {k: v.to(device) for k, v in sd.items()}
            else:
                from safetensors import safe_open
                sd = {}
                with safe_open(path, framework="pt", device=str(device)) as f:
                    for k in f.keys():
                        sd[k] = f.get_tensor(k)
                    metadata = f.metadata()
        except Exception as exc:  # noqa: BLE001 - corrupt/truncated files
            raise ModelFileError(f"{path}: not a readable safetensors file ({exc})") from exc
        if metadata is None:
            try:
                metadata = safetensors_header(path).get("__metadata__")
            except Exception:  # noqa: BLE001
                metadata = None
    else:
        try:
            data = torch.load(path, map_location=device, weights_only=True, mmap=not memory.args.get("disable_mmap"))
        except RuntimeError as exc:
            # old (non-zip) pickles cannot be mmapped; retry without
            if "mmap" in str(exc):
                data = _load_pickle_safe(path, device)
            else:
                raise ModelFileError(f"{path}: cannot be loaded: {exc}") from exc
        except pickle.UnpicklingError as exc:
            raise ModelFileError(
                f"{path}: refused: this pickle needs code to load (only plain tensors are allowed "
                f"with weights_only=True; convert it to .safetensors). Details: {str(exc).splitlines()[0]}") from exc
        except Exception as exc:  # noqa: BLE001
            raise ModelFileError(f"{path}: cannot be loaded: {exc}") from exc
        sd = data
        if isinstance(sd, dict):
            if "state_dict" in sd and isinstance(sd["state_dict"], dict):
                sd = sd["state_dict"]
            elif "module" in sd and isinstance(sd["module"], dict) and all(isinstance(v, torch.Tensor) for v in sd["module"].values()):
                sd = sd["module"]
            else:
                # keep tensors only (epoch/global_step counters etc. are dropped)
                if all(isinstance(k, str) for k in sd) and any(isinstance(v, torch.Tensor) for v in sd.values()):
                    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if isinstance(sd, dict) and ops.has_comfy_quant(sd):
        try:
            sd = ops.from_comfy_quant(sd)
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}") from exc
    if return_metadata:
        return sd, metadata
    if metadata and isinstance(sd, dict):
        sd = StateDict(sd)
        sd.metadata = metadata  # e.g. LTX-Video's "config" JSON, read by its detector
    return sd


class StateDict(dict):
    """A state dict that keeps its file's safetensors header metadata (``.metadata``)."""

    metadata: dict | None = None


def _load_pickle_safe(path: str, device: torch.device) -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(f"{path}: refused: this pickle needs code to load ({str(exc).splitlines()[0]})") from exc


def save_torch_file(sd: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    import safetensors.torch
    sd = {k: v.contiguous() for k, v in sd.items()}
    safetensors.torch.save_file(sd, path, metadata=metadata)


def state_dict_prefix_replace(sd: dict[str, Any], replace: dict[str, str], filter_keys: bool = False) -> dict[str, Any]:
    out = {} if filter_keys else dict(sd)
    for old, new in replace.items():
        for k in [k for k in sd if k.startswith(old)]:
            out[new + k[len(old):]] = sd[k]
            if not filter_keys:
                out.pop(k, None)
    return out
