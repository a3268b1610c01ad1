"""The ``comfyui`` command.

    comfyui [flags]                         start the server (the official frontend + API)
    comfyui --workflows FILE ... | -        run workflows, one JSON line of outputs each

Flags, ``COMFYUI_*`` environment variables and config files are ComfyUI LTS's; see
``comfyui --help`` (the parser lives in :mod:`comfyui.config`).
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Sequence

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(config: Any) -> None:
    """Logs always go to stderr (stdout belongs to --workflows' JSON lines)."""
    level = getattr(config, "logging_level", None) or ("DEBUG" if getattr(config, "verbose", False) else "INFO")
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    for old in list(root.handlers):
        if getattr(old, "_comfyui_cli", False):
            root.removeHandler(old)
    handler._comfyui_cli = True  # type: ignore[attr-defined]
    from ..redact import install_on

    install_on(handler)  # no credential in any log line (comfyui.redact)
    root.addHandler(handler)
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    from ..config import load_config
    from ..process import configure_process

    args = list(sys.argv[1:] if argv is None else argv)
    config = load_config(args)
    setup_logging(config)
    if any(a == "--api-key" or a.startswith("--api-key=") for a in args):
        logging.getLogger("comfyui").warning(
            "--api-key on the command line is visible to every local user through ps; "
            "use --api-key-file PATH or the COMFYUI_API_KEY environment variable")
    configure_process(cpu=bool(getattr(config, "cpu", False)))

    workflows = getattr(config, "workflows", None)
    if workflows:
        if isinstance(workflows, str):
            workflows = [workflows]
        from .workflows import main_workflows

        return main_workflows(config, list(workflows))

    from ..server.app import run_server

    try:
        result = run_server(config)
    except KeyboardInterrupt:
        return 0
    except Exception:  # noqa: BLE001 - through the (redacting) log, not the bare traceback printer
        logging.getLogger("comfyui").critical("the server could not start or stopped on an error", exc_info=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
