"""Prompt submission: the one policy behind every way in (``POST /prompt``,
``POST /api/v1/prompts``, the embedded client, ``comfyui --workflows``; the remote client
reads the same error bodies back).

* :meth:`PromptRequest.from_body` reads ComfyUI's request body (``prompt``, ``prompt_id``,
  ``number``, ``front``, ``client_id``, ``extra_data``, ``partial_execution_targets``).
* A client-chosen ``prompt_id`` is a non-empty string of at most 128 characters. Submitting
  an id that is already queued, running or in history queues nothing new and answers that
  job (``SubmitResult.duplicate``): retries are safe.
* ``extra_data.create_time`` (milliseconds) is set when it is not a number; the Jobs API
  lists jobs by it.
* Secrets (``extra_data.api_key_comfy_org``/``auth_token_comfy_org``) are split off by the
  engine before anything is stored or logged and handed to the nodes only while the prompt
  runs; views of jobs strip them again (``listing.without_secrets``).
* The queue holds at most ``--max-queue-size`` prompts (pending and running).
* Every refusal is a :class:`PromptRejected`: an HTTP status plus ComfyUI's error body
  ``{"error": {"type", "message", "details", "extra_info"}, "node_errors": {...}}``
  (400 for a bad request or an invalid prompt, 429 ``queue_full`` with ``Retry-After``, 503
  ``store_unavailable`` with the reason when the job database cannot store it: nothing queued).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..engine.validation import PromptError

MAX_PROMPT_ID_LEN = 128


class PromptRejected(PromptError):
    """A prompt that was not queued: ``status`` (HTTP), ``error``, ``node_errors``, ``headers``."""

    def __init__(self, error: dict, node_errors: dict | None = None, status: int = 400,
                 headers: dict | None = None):
        super().__init__(error, node_errors or {})
        self.status, self.headers = status, headers or {}

    @classmethod
    def of(cls, type_: str, message: str, details: str = "", status: int = 400, extra_info: dict | None = None,
           headers: dict | None = None) -> "PromptRejected":
        error = {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}
        return cls(error, status=status, headers=headers)

    @classmethod
    def from_body(cls, body: Any, status: int) -> "PromptRejected":
        """The refusal an answer's body describes (a server's, ours or ComfyUI's)."""
        body = body if isinstance(body, dict) else {"error": body}
        error = body.get("error")
        if not isinstance(error, dict):
            message = str(error if error is not None else body)
            error = {"type": "error", "message": message, "details": "", "extra_info": {}}
        node_errors = body.get("node_errors")
        return cls(error, node_errors if isinstance(node_errors, dict) else {}, status)

    def body(self) -> dict:
        return {"error": self.error, "node_errors": self.node_errors}


def _invalid(message: str, details: str) -> PromptRejected:
    return PromptRejected.of("invalid_prompt", message, details)


def valid_prompt_id(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_PROMPT_ID_LEN


@dataclass
class PromptRequest:
    prompt: dict
    prompt_id: str | None = None
    client_id: str | None = None
    extra_data: dict = field(default_factory=dict)
    front: bool = False
    number: float | None = None
    partial_execution_targets: list[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, dict):
            raise _invalid("Invalid prompt", "'prompt' must be a JSON object")
        if self.prompt_id is not None and not valid_prompt_id(self.prompt_id):
            raise _invalid("Invalid prompt_id",
                           f"prompt_id must be a non-empty string of at most {MAX_PROMPT_ID_LEN} characters")
        if self.extra_data is None:
            self.extra_data = {}
        if not isinstance(self.extra_data, dict):
            raise _invalid("Invalid extra_data", "'extra_data' must be a JSON object")
        self.extra_data = dict(self.extra_data)
        if self.client_id is not None:
            self.client_id = str(self.client_id) or None
        if self.client_id is not None:
            self.extra_data["client_id"] = self.client_id
        created = self.extra_data.get("create_time")
        if not isinstance(created, (int, float)) or isinstance(created, bool):
            self.extra_data["create_time"] = int(time.time() * 1000)
        if self.number is not None:
            self.number = _finite_number(self.number)
        targets = self.partial_execution_targets
        if targets is not None:
            if not isinstance(targets, list) or not all(isinstance(t, (str, int)) for t in targets):
                raise _invalid("Invalid partial_execution_targets",
                               "'partial_execution_targets' must be a list of node ids")
            self.partial_execution_targets = [str(t) for t in targets]

    @classmethod
    def from_body(cls, body: Any) -> "PromptRequest":
        """ComfyUI's ``POST /prompt`` body."""
        if not isinstance(body, dict):
            raise _invalid("Invalid prompt request", "The request body must be a JSON object")
        if body.get("prompt") is None:
            raise PromptRejected.of("no_prompt", "No prompt provided", "No prompt provided")
        return cls(body["prompt"], prompt_id=body.get("prompt_id"), client_id=body.get("client_id"),
                   extra_data=body.get("extra_data"), front=bool(body.get("front", False)),
                   number=body.get("number"), partial_execution_targets=body.get("partial_execution_targets"))


def _finite_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _invalid("Invalid number", "'number' must be a number")
    try:
        number = float(value)
    except ValueError:
        raise _invalid("Invalid number", "'number' must be a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _invalid("Invalid number", "'number' must be finite")
    return number


class PromptSubmitter:
    """Validates and queues :class:`PromptRequest` s on one engine."""

    def __init__(self, engine: Any):
        self.engine = engine

    async def known(self, prompt_id: str) -> bool:
        """Whether a job with this id is queued, running or in history."""
        queue = self.engine.queue
        return await queue.call(queue.contains, prompt_id)

    async def submit(self, request: PromptRequest) -> Any:
        """Queue ``request`` (from an event loop); -> the engine's ``SubmitResult`` once the
        job is stored. Raises :class:`PromptRejected`."""
        from ..engine.engine import QueueFull
        from ..engine.queue import StoreUnavailable

        limit = self.engine.max_queue_size
        options: dict[str, Any] = dict(prompt_id=request.prompt_id, client_id=request.client_id,
                                       extra_data=request.extra_data, front=request.front,
                                       partial_execution_targets=request.partial_execution_targets)
        if request.number is not None:
            options["number"] = request.number
        try:
            return await self.engine.submit_async(request.prompt, **options)
        except PromptRejected:
            raise
        except PromptError as e:
            raise PromptRejected(e.error, e.node_errors) from e
        except QueueFull:
            raise PromptRejected.of("queue_full", "The queue is full",
                                    f"The queue already holds {limit} prompts (--max-queue-size)",
                                    status=429, headers={"Retry-After": "1"}) from None
        except StoreUnavailable as e:
            raise PromptRejected.of("store_unavailable", "The job store is unavailable; the prompt was not queued",
                                    e.reason, status=503, headers={"Retry-After": "5"}) from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # a malformed graph the validator did not catch is still the request's fault
            raise _invalid("Invalid prompt", f"{type(e).__name__}: {e}") from e
