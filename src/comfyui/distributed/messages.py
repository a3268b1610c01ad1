"""The broker's messages: versioned JSON, validated on the way in (no pickle, nothing
executable). ``schema/messages-v1.json`` is the published JSON schema of these models
(tests/distributed/test_messages.py keeps it equal to :func:`json_schema`).

Every message is a JSON object with ``v`` (the schema version, 1) and ``kind``:

* ``prompt``: a prompt to run (frontend -> the prompts queue -> one worker);
* ``event``: something a worker's engine reported while running a prompt (executing,
  progress, executed, execution_error, previews as base64, ...), for the frontend whose
  WebSocket client queued it;
* ``result``: a prompt finished and its history entry is in the shared store;
* ``control``: interrupt, cancel or free (``/free``: unload models, free memory), broadcast
  to every worker;
* ``worker``: a worker's state (what it runs, which checkpoints it holds), broadcast.

:func:`decode` raises :class:`BadMessage` with a reason for anything that is not one of these
(not JSON, unknown version or kind, a missing or mistyped field); workers dead-letter such a
message with that reason and go on.
"""
from __future__ import annotations

import json
import pathlib
import time
from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from ..jsonutil import dumps_strict, loads

VERSION = 1
SCHEMA_PATH = pathlib.Path(__file__).parent / "schema" / "messages-v1.json"

PromptId = Annotated[str, Field(min_length=1, max_length=128)]
NodeId = Annotated[str, Field(min_length=1, max_length=256)]


class BadMessage(ValueError):
    """A message that cannot be used; ``reason`` says why (it goes with the dead letter)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    v: Literal[1] = VERSION


class Node(BaseModel):
    """One node of an API-format prompt."""
    model_config = ConfigDict(extra="allow", strict=True)  # ("_meta" and what UIs add)
    class_type: Annotated[str, Field(min_length=1)]
    inputs: dict[str, Any] = Field(default_factory=dict)


class PromptMessage(_Message):
    kind: Literal["prompt"] = "prompt"
    prompt_id: PromptId
    prompt: dict[NodeId, Node]
    number: float
    client_id: str | None = None
    extra_data: dict[str, Any] = Field(default_factory=dict)  # secrets never travel
    outputs: list[NodeId] = Field(default_factory=list)  # the output nodes validation chose
    checkpoints: list[str] = Field(default_factory=list)  # model files it loads (routing)
    front: bool = False
    submitted_at: float = Field(default_factory=time.time)


class EventMessage(_Message):
    kind: Literal["event"] = "event"
    prompt_id: PromptId
    client_id: str | None = None
    event: Annotated[str, Field(min_length=1, max_length=128)]
    data: dict[str, Any]
    worker_id: str
    seq: int = 0  # per worker, increasing: a frontend drops what it has seen (resent after a reconnect)


class ResultMessage(_Message):
    kind: Literal["result"] = "result"
    prompt_id: PromptId
    client_id: str | None = None
    status: Literal["completed", "failed", "cancelled"]
    worker_id: str
    seq: int = 0


class ControlMessage(_Message):
    kind: Literal["control"] = "control"
    action: Literal["interrupt", "cancel", "free"]
    prompt_id: PromptId | None = None  # None: every running prompt (interrupt only)
    unload_models: bool = False  # free: /free's two options
    free_memory: bool = False


class WorkerMessage(_Message):
    kind: Literal["worker"] = "worker"
    worker_id: str
    state: Literal["ready", "stopping", "gone"]
    running: list[PromptId] = Field(default_factory=list)
    checkpoints: list[str] = Field(default_factory=list)  # loaded in memory now
    concurrency: int = 1
    at: float = Field(default_factory=time.time)


Message = Annotated[Union[PromptMessage, EventMessage, ResultMessage, ControlMessage, WorkerMessage],
                    Field(discriminator="kind")]
_adapter: pydantic.TypeAdapter = pydantic.TypeAdapter(Message)


def encode(message: _Message) -> bytes:
    return dumps_strict(message.model_dump(mode="json")).encode()


def decode(body: bytes) -> Any:
    """A message from its JSON bytes; :class:`BadMessage` (with the reason) if it is none."""
    try:
        raw = loads(body)
    except Exception as e:  # noqa: BLE001 - any parse failure is the message's fault
        raise BadMessage(f"not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise BadMessage("not a JSON object")
    if raw.get("v") != VERSION:
        raise BadMessage(f"unsupported message version {raw.get('v')!r} (this process reads version {VERSION})")
    try:
        return _adapter.validate_python(raw)  # strict: nothing is coerced (a float takes an int)
    except pydantic.ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}"
                             for err in e.errors()[:5])
        raise BadMessage(f"invalid {raw.get('kind', 'message')!s}: {problems}") from None


def json_schema() -> dict:
    schema = _adapter.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://comfyui.invalid/distributed/messages-v1.json"
    schema["title"] = "ComfyUI cluster message, version 1"
    return schema


def write_schema() -> None:  # python -m comfyui.distributed.messages
    SCHEMA_PATH.parent.mkdir(exist_ok=True)
    SCHEMA_PATH.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_schema()
