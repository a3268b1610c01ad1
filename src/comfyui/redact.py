"""Credentials never shown: masking for answers, log lines and echoed settings.

* :func:`redact_url` masks the password of ``scheme://user:password@host`` (and secret query
  parameters such as ``?password=``) and keeps the rest, so a database URL stays readable:
  ``postgresql://comfy:***@db/comfy``.
* :func:`redact_text` masks every such URL inside free text, ``Bearer`` tokens,
  ``password=...``-style pairs and every value registered with :func:`register_secret`
  (the API key, a database password) wherever it appears.
* :func:`redacted_argv` masks the values of secret flags (``--api-key``, ``--database-url``,
  anything named like ``*key*``, ``*secret*``, ``*token*``, ``*password*``) in a command line.
* :class:`RedactingFilter` applies :func:`redact_text` to a log record (message, arguments,
  traceback); the ``comfyui`` command's stderr handler and the server's log buffer
  (``/internal/logs``) carry it.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Any, Iterable

MASK = "***"

# option / setting names whose values are secrets (matched on the dest: api_key, database_url)
_SECRET_NAME = re.compile(r"(key|secret|token|passw|credential|database_url|db_url|dsn)", re.I)
# flags whose value is a *path* to a secret, not the secret itself
_NOT_SECRET = frozenset({"api_key_file", "api_node_keys", "tls_keyfile", "tls_certfile"})

_URL_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/:@'\"]*:)(?P<pw>[^\s@'\"/]+)(?P<at>@)")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;\s](?:password|passwd|pwd|sslpassword|secret|token|api_key|apikey|access_key|"
    r"secret_key|key)=)(?P<val>[^&\s'\"]+)", re.I)
_AUTH_HEADER = re.compile(r"(?P<head>\bBearer\s+)(?P<val>[A-Za-z0-9._~+/=\-]{6,})")
_KV_SECRET = re.compile(r"(?P<head>\b(?:password|passwd|api[_-]?key|secret)\s*[=:]\s*['\"]?)(?P<val>[^\s'\",;&]+)",
                        re.I)

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(value: Any) -> None:
    """Mask ``value`` wherever it appears in redacted text from now on (values shorter
    than 4 characters are ignored: masking them would garble ordinary text)."""
    global _secrets
    if not isinstance(value, str) or len(value) < 4:
        return
    with _lock:
        _secrets = _secrets | {value}


def registered_secrets() -> frozenset[str]:
    return _secrets


def is_secret_name(name: str) -> bool:
    """True for a setting / flag name whose value is a credential (``api_key``,
    ``--database-url``, ``storage_secret``...)."""
    dest = name.lstrip("-").replace("-", "_").lower()
    return dest not in _NOT_SECRET and bool(_SECRET_NAME.search(dest))


def url_password(url: str) -> str | None:
    m = _URL_USERINFO.search(url or "")
    return m.group("pw") if m else None


def redact_url(url: str) -> str:
    """``url`` with its password and secret query parameters masked."""
    if not isinstance(url, str):
        return url
    out = _URL_USERINFO.sub(lambda m: m.group("head") + MASK + m.group("at"), url)
    return _QUERY_SECRET.sub(lambda m: m.group("head") + MASK, out)


def redact_text(text: str) -> str:
    """``text`` with every credential this module can recognise masked."""
    if not isinstance(text, str) or not text:
        return text
    out = _URL_USERINFO.sub(lambda m: m.group("head") + MASK + m.group("at"), text)
    out = _QUERY_SECRET.sub(lambda m: m.group("head") + MASK, out)
    out = _AUTH_HEADER.sub(lambda m: m.group("head") + MASK, out)
    out = _KV_SECRET.sub(lambda m: m.group("head") + MASK, out)
    for secret in _secrets:
        if secret in out:
            out = out.replace(secret, MASK)
    return out


def redact_value(name: str, value: Any) -> Any:
    """A setting's value as it may be shown: secrets masked (URLs keep all but the password)."""
    if value is None or value == "" or not is_secret_name(name):
        return redact_text(value) if isinstance(value, str) else value
    if isinstance(value, str) and "://" in value:
        return redact_url(value) if url_password(value) or _QUERY_SECRET.search(value) else value
    return MASK


def redacted_argv(argv: Iterable[str]) -> list[str]:
    """A command line with the values of secret flags masked."""
    out: list[str] = []
    pending: str | None = None
    for arg in argv:
        arg = str(arg)
        if pending is not None:
            out.append(redact_value(pending, arg))
            pending = None
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if is_secret_name(name):
                if eq:
                    out.append(f"{name}={redact_value(name, value)}")
                else:
                    out.append(arg)
                    pending = name
                continue
        out.append(redact_text(arg))
    return out


class RedactingFilter(logging.Filter):
    """Masks credentials in a record before a handler formats it (message and arguments are
    merged into the message; the traceback text is rendered and masked once)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: leave it to the handler
            return True
        clean = redact_text(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def install_on(handler: logging.Handler) -> logging.Handler:
    """Add a :class:`RedactingFilter` to ``handler`` (once)."""
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())
    return handler


__all__ = ["MASK", "RedactingFilter", "install_on", "is_secret_name", "redact_text", "redact_url",
           "redact_value", "redacted_argv", "register_secret", "registered_secrets", "url_password"]
