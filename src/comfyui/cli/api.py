"""``comfyui api generate-workflow WORKFLOW.api.json -o MODULE.py``: a starting module for a
typed workflow endpoint of the production API (docs/production-api.md, "Workflow endpoints").

The node types come from the built-in nodes and the workspace's custom nodes; any other
``comfyui`` flag (``--base-directory``, ``-c``) picks the workspace, as for the server.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="comfyui api", description="Production API tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{generate-workflow}")
    gen = sub.add_parser("generate-workflow", help="write a workflow-endpoint module from an API-format workflow",
                         description="Every widget input of the workflow becomes a typed, documented field "
                                     "with the workflow's value as default.")
    gen.add_argument("workflow", help="a workflow exported with 'Export (API)' (*.api.json)")
    gen.add_argument("-o", "--output", required=True, help="the module to write (put it under --workflow-dir)")
    gen.add_argument("--summary", help="the endpoint's summary in /docs (default: from the file name)")
    gen.add_argument("--description", help="the endpoint's description in /docs")
    gen.add_argument("--force", action="store_true", help="overwrite the output file")
    return parser


def _object_info(config) -> dict:
    from ..nodes.custom_nodes import load_custom_nodes
    from ..nodes.registry import NodeRegistry
    from ..runtime import Runtime

    with Runtime(config).active():
        registry = NodeRegistry.with_builtins()
        load_custom_nodes(registry, disable_all=bool(getattr(config, "disable_all_custom_nodes", False)))
        return registry.object_info()


def main_api(argv: Sequence[str]) -> int:
    from ..api_server.workflow_codegen import generate_module
    from ..config import load_config

    opts, rest = _parser().parse_known_args(list(argv))
    try:
        with open(opts.workflow, encoding="utf-8") as f:
            prompt = json.load(f)
    except (OSError, ValueError) as e:
        print(f"comfyui api: cannot read {opts.workflow}: {e}", file=sys.stderr)
        return 2
    if isinstance(prompt, dict) and "prompt" in prompt and isinstance(prompt["prompt"], dict):
        prompt = prompt["prompt"]
    if not isinstance(prompt, dict) or "nodes" in prompt:
        print(f"comfyui api: {opts.workflow} is not an API-format workflow (use the editor's 'Export (API)')",
              file=sys.stderr)
        return 2
    if os.path.exists(opts.output) and not opts.force:
        print(f"comfyui api: {opts.output} exists (--force to overwrite)", file=sys.stderr)
        return 2
    try:
        source = generate_module(prompt, _object_info(load_config(rest)), os.path.basename(opts.workflow),
                                 opts.summary, opts.description)
    except ValueError as e:
        print(f"comfyui api: {e}", file=sys.stderr)
        return 2
    with open(opts.output, "w", encoding="utf-8") as f:
        f.write(source)
    print(f"wrote {opts.output}")
    return 0
