"""Helpers of the API-node tests (imported as ``apinode_helpers``)."""
from __future__ import annotations

import asyncio

TOKEN = "comfy-login-token-7f3a9c1e5b"


async def run_prompt(engine, prompt: dict, extra_data: dict | None = None, timeout: float = 30) -> dict:
    """Queue ``prompt`` and wait for its history entry."""
    result = engine.submit(prompt, extra_data={"auth_token_comfy_org": TOKEN} if extra_data is None else extra_data)
    assert not result.node_errors, result.node_errors
    return await asyncio.wait_for(asyncio.wrap_future(engine.wait(result.prompt_id)), timeout)


def with_preview(node: dict) -> dict:
    """The API node as node "1", its IMAGE shown by PreviewImage "2"."""
    return {"1": node, "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


def error_of(entry: dict) -> dict | None:
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_error":
            return data
    return None
