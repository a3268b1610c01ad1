"""Typed workflow endpoints: ``POST /workflow/<path>`` for each Python module under
``--workflow-dir`` (``WORKFLOW_DIR``), the Python counterpart of comfyui-api's zod/TypeScript
workflow files.

A workflow module defines

* ``RequestSchema``: a pydantic model of the endpoint's ``input`` (its JSON schema is shown in
  ``/openapi.json`` and ``/docs``),
* ``generate_workflow(input: RequestSchema) -> dict``: the API-format prompt to run (may be
  ``async``),
* optionally ``summary`` and ``description`` (the operation's texts in the docs).

``models/sdxl/txt2img.py`` is served at ``POST /workflow/sdxl/txt2img``. The body is
comfyui-api's: ``{"id", "input": {...}, "webhook", "convert_output", "s3"}``; ``input`` is
validated (a 400 lists pydantic's errors), the prompt built, and the rest runs as
``POST /prompt`` with that prompt; the answer is ``POST /prompt``'s plus ``input`` (with its
defaults filled in). ``comfyui api generate-workflow`` writes a starting module from an
exported API workflow (:mod:`.workflow_codegen`).

Workflow modules may read :data:`config` at import time: ``config.warmup_checkpoint`` is the
checkpoint of ``WARMUP_PROMPT_FILE`` (the default model, as in comfyui-api), set before the
modules are imported.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)


@dataclass
class WorkflowConfig:
    warmup_checkpoint: str | None = None


config = WorkflowConfig()


@dataclass
class WorkflowEndpoint:
    path: str                  # "sdxl/txt2img"
    schema: type[BaseModel]
    generate: Any              # (RequestSchema) -> prompt dict, or a coroutine of one
    summary: str
    description: str

    @property
    def route(self) -> str:
        return f"/workflow/{self.path}"

    @property
    def schema_name(self) -> str:
        """The OpenAPI component name of its input: ``sdxl/txt2img`` -> ``Workflow_sdxl_txt2img_Input``."""
        return "Workflow_" + re.sub(r"[^A-Za-z0-9]+", "_", self.path) + "_Input"

    def parse(self, raw: Any) -> BaseModel:
        return self.schema.model_validate(raw)

    async def build_prompt(self, data: BaseModel) -> dict:
        prompt = self.generate(data)
        if inspect.isawaitable(prompt):
            prompt = await prompt
        return prompt


class WorkflowLoadError(Exception):
    pass


def _load_module(file: str, path: str) -> WorkflowEndpoint:
    name = "comfyui_workflow_endpoints." + re.sub(r"[^A-Za-z0-9_]+", "_", path)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise WorkflowLoadError(f"{type(e).__name__}: {e}") from e
    schema = getattr(module, "RequestSchema", None)
    generate = getattr(module, "generate_workflow", None)
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise WorkflowLoadError("it must define RequestSchema, a pydantic BaseModel subclass")
    if not callable(generate):
        raise WorkflowLoadError("it must define generate_workflow(input) -> prompt")
    return WorkflowEndpoint(path, schema, generate, str(getattr(module, "summary", "") or path),
                            str(getattr(module, "description", "") or ""))


def load_workflows(folder: str | None, warmup_checkpoint: str | None = None) -> list[WorkflowEndpoint]:
    """Every ``*.py`` module under ``folder`` (files and folders starting with ``_`` or ``.``
    skipped), sorted by path. A module that fails to load is logged and skipped: the other
    endpoints and the rest of the API still serve."""
    config.warmup_checkpoint = warmup_checkpoint
    if not folder:
        return []
    if not os.path.isdir(folder):
        log.error("workflow folder %s does not exist; no workflow endpoints", folder)
        return []
    endpoints = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        for filename in sorted(files):
            if not filename.endswith(".py") or filename.startswith(("_", ".")):
                continue
            file = os.path.join(root, filename)
            path = os.path.relpath(file, folder)[:-3].replace(os.sep, "/")
            try:
                endpoints.append(_load_module(file, path))
            except WorkflowLoadError as e:
                log.error("workflow %s not mounted: %s", file, e)
                continue
            log.info("workflow endpoint POST /workflow/%s", path)
    return endpoints


def warmup_checkpoint_of(file: str | None) -> str | None:
    """The checkpoint (``ckpt_name``) of the warmup prompt file, if it names one."""
    from .app import _checkpoint_of

    if not file:
        return None
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None  # the warmup itself reports the problem
    return _checkpoint_of(data.get("prompt", data) if isinstance(data, dict) else data)


def input_errors(error: ValidationError) -> list[dict]:
    """pydantic's errors as JSON (``loc``, ``msg``, ``type``, ``input``), locations under ``input``."""
    errors = json.loads(error.json(include_url=False))
    for item in errors:
        item["loc"] = ["input", *item.get("loc", [])]
    return errors
