"""API nodes: ComfyUI's partner nodes that call paid services (BFL, OpenAI, ...) through the
Comfy API proxy with the user's Comfy account, or a vendor directly with the user's own key.

* ``models`` - request/response models of the proxy routes used (the contract server in the
  tests validates against the same models);
* ``client`` - routing (proxy or direct), auth headers, retries, task polling, downloads;
* ``images`` - IMAGE tensors to/from the bytes services take and return;
* ``nodes_<vendor>`` - the nodes, with upstream's class names, inputs, categories and a price badge.

They are their own registry group (``NodeRegistry.load_api_nodes``); ``--disable-api-nodes``
leaves them out. See docs/api-nodes.md.
"""
from __future__ import annotations

import importlib

NODE_MODULES = ("nodes_bfl", "nodes_ideogram", "nodes_luma", "nodes_openai", "nodes_stability")


def node_classes() -> list[type]:
    classes: list[type] = []
    for name in NODE_MODULES:
        classes += importlib.import_module(f"{__name__}.{name}").NODES
    return classes
