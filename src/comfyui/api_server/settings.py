"""The production API's settings: the listener from the config (``--enable-api``,
``--api-port``, ``COMFYUI_ENABLE_API``, ``COMFYUI_API_PORT``), the rest from the environment
variables comfyui-api reads (same names, same defaults), plus a few of our own for input
downloads (``INPUT_MAX_SIZE_MB``, ``INPUT_TIMEOUT_S``)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SYSTEM_EVENTS = ("status", "progress", "executing", "execution_start", "execution_cached", "executed",
                 "execution_success", "execution_interrupted", "execution_error")


class SettingsError(ValueError):
    """An environment variable could not be read; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass
class ApiSettings:
    port: int = 3000
    max_body_bytes: int = 100 * 1024 * 1024           # MAX_BODY_SIZE_MB
    max_queue_depth: int = 0                          # MAX_QUEUE_DEPTH: /ready 503 at this depth; 0: no limit
    webhook_retries: int = 3                          # PROMPT_WEBHOOK_RETRIES: tries after the first
    webhook_secret: str | None = None                 # WEBHOOK_SECRET: "whsec_<base64>" (or bare base64)
    webhook_backoff_s: float = 1.0                    # first retry delay; doubles per retry
    webhook_timeout_s: float = 30.0
    system_webhook_url: str | None = None             # SYSTEM_WEBHOOK_URL
    system_webhook_events: tuple[str, ...] = ()       # SYSTEM_WEBHOOK_EVENTS ("all" or a list)
    system_meta: dict[str, str] = field(default_factory=dict)  # SYSTEM_META_*
    warmup_prompt_file: str | None = None             # WARMUP_PROMPT_FILE
    input_max_bytes: int = 100 * 1024 * 1024          # INPUT_MAX_SIZE_MB: one downloaded input
    input_timeout_s: float = 60.0                     # INPUT_TIMEOUT_S: one download, start to end
    workflow_dir: str | None = None                   # --workflow-dir, else WORKFLOW_DIR

    @classmethod
    def from_env(cls, config: Any = None, env: Mapping[str, str] | None = None) -> "ApiSettings":
        env = os.environ if env is None else env
        events_raw = env.get("SYSTEM_WEBHOOK_EVENTS", "").strip()
        if events_raw == "all":
            events: tuple[str, ...] = SYSTEM_EVENTS
        else:
            events = tuple(e.strip() for e in events_raw.split(",") if e.strip())
            unknown = [e for e in events if e not in SYSTEM_EVENTS]
            if unknown:
                raise SettingsError(f"SYSTEM_WEBHOOK_EVENTS: unknown event(s) {', '.join(unknown)}; "
                                    f"known: {', '.join(SYSTEM_EVENTS)} or 'all'")
        secret = env.get("WEBHOOK_SECRET") or None
        if secret:
            from ..redact import register_secret

            register_secret(secret)
        port = getattr(config, "api_port", None)
        return cls(
            port=3000 if port is None else int(port),
            max_body_bytes=int(_float(env, "MAX_BODY_SIZE_MB", 100.0) * 1024 * 1024),
            max_queue_depth=_int(env, "MAX_QUEUE_DEPTH", 0),
            webhook_retries=_int(env, "PROMPT_WEBHOOK_RETRIES", 3),
            webhook_secret=secret,
            system_webhook_url=env.get("SYSTEM_WEBHOOK_URL") or None,
            system_webhook_events=events,
            system_meta={k[len("SYSTEM_META_"):]: v for k, v in env.items()
                         if k.startswith("SYSTEM_META_") and len(k) > len("SYSTEM_META_")},
            warmup_prompt_file=env.get("WARMUP_PROMPT_FILE") or None,
            input_max_bytes=int(_float(env, "INPUT_MAX_SIZE_MB", 100.0) * 1024 * 1024),
            input_timeout_s=_float(env, "INPUT_TIMEOUT_S", 60.0),
            workflow_dir=getattr(config, "workflow_dir", None) or env.get("WORKFLOW_DIR") or None,
        )
