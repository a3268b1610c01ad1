"""The ``comfyui`` command.

    comfyui [flags]                         start the server (the official frontend + API)
    comfyui --workflows FILE ... | -        run workflows, one JSON line of outputs each
    comfyui model download|list ...         download model files, list the workspace's (cli/model.py)
    comfyui node install|uninstall|update|disable|enable|list ...   manage custom node packs
    comfyui api generate-workflow FILE -o MODULE   a typed workflow endpoint from an API workflow

Flags, ``COMFYUI_*`` environment variables and config files are ComfyUI LTS's; see
``comfyui --help`` (the parser lives in :mod:`comfyui.config`).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Sequence

SUBCOMMANDS = ("model", "node", "api")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# libraries whose INFO lines are chatter at start (alembic: nine migration lines): shown at
# --verbose (DEBUG) only
QUIET_LOGGERS = ("alembic",)


def setup_logging(config: Any) -> None:
    """Logs go to stderr, or to stdout with ``--log-stdout`` (never in batch mode: stdout
    belongs to --workflows' JSON lines)."""
    level = getattr(config, "logging_level", None) or ("DEBUG" if getattr(config, "verbose", False) else "INFO")
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    root = logging.getLogger()
    to_stdout = bool(getattr(config, "log_stdout", False)) and not getattr(config, "workflows", None)
    handler = logging.StreamHandler(sys.stdout if to_stdout else sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    for old in list(root.handlers):
        if getattr(old, "_comfyui_cli", False):
            root.removeHandler(old)
    handler._comfyui_cli = True  # type: ignore[attr-defined]
    from ..redact import install_on

    install_on(handler)  # no credential in any log line (comfyui.redact)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)


def check_front_end_version(config: Any) -> str | None:
    """``--front-end-version [owner/repo@]VERSION``: this server never downloads a frontend, so
    the version is honoured only when it is the installed comfyui-frontend-package's (or
    ``latest``); otherwise -> the message to refuse with."""
    wanted = getattr(config, "front_end_version", None)
    if not wanted or getattr(config, "front_end_root", None):
        return None
    version = str(wanted).rsplit("@", 1)[-1].strip().lstrip("v")
    try:
        from importlib.metadata import version as dist_version

        installed = dist_version("comfyui-frontend-package")
    except Exception:  # noqa: BLE001
        installed = None
    if installed and version in ("latest", installed):
        return None
    return (f"--front-end-version {wanted}: this server does not download frontends; it serves the "
            f"installed comfyui-frontend-package ({installed or 'not installed'}). Install that version "
            f"with `pip install comfyui-frontend-package=={version}` or point --front-end-root at a built frontend")


def quick_test(config: Any) -> int:
    """``--quick-test-for-ci``: load the built-in and custom nodes as the server would, then exit
    (1 when a custom node pack failed to import, else 0); nothing is served, no job store opened."""
    from ..nodes.custom_nodes import load_custom_nodes
    from ..nodes.registry import NodeRegistry
    from ..runtime import Runtime

    log = logging.getLogger("comfyui")
    rt = Runtime(config)
    with rt.active():
        registry = NodeRegistry.with_builtins(api_nodes=not getattr(config, "disable_api_nodes", False))
        results = load_custom_nodes(registry,
                                    disable_all=bool(getattr(config, "disable_all_custom_nodes", False)),
                                    whitelist=getattr(config, "whitelist_custom_nodes", None) or None,
                                    blacklist=getattr(config, "blacklist_custom_nodes", None) or None)
        count = len(registry.object_info())
    failed = [r for r in results if r.error]
    for r in failed:
        log.error("custom node pack %s failed to import:\n%s", r.path or r.name, r.error)
    if failed:
        log.error("quick test failed: %d custom node pack(s) could not be imported", len(failed))
        return 1
    log.info("quick test passed: %d node types loaded", count)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from ..config import load_config
    from ..process import configure_process

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:  # `comfyui model|node|api ...`: cli/<name>.py's main_<name>
        import importlib

        module = importlib.import_module(f".{args[0]}", __package__)
        return getattr(module, f"main_{args[0]}")(args[1:])
    config = load_config(args)
    setup_logging(config)
    workflows = getattr(config, "workflows", None)
    if not workflows and not getattr(config, "quick_test_for_ci", False):
        from ..server.context import capture_process_logs

        capture_process_logs()  # the Logs panel shows the start-up too
    log = logging.getLogger("comfyui")
    if getattr(config, "config", None):
        chosen = any(a in ("-c", "--config") or a.startswith("--config=") for a in args) or os.environ.get("COMFYUI_CONFIG")
        log.info("config file: %s%s", config.config, "" if chosen else " (found in the current directory)")
    from ..config import report_inert_flags

    report_inert_flags(config)
    problem = check_front_end_version(config)
    if problem:
        log.error("%s", problem)
        return 2
    if any(a == "--api-key" or a.startswith("--api-key=") for a in args):
        logging.getLogger("comfyui").warning(
            "--api-key on the command line is visible to every local user through ps; "
            "use --api-key-file PATH or the COMFYUI_API_KEY environment variable")
    configure_process(cpu=bool(getattr(config, "cpu", False)),
                      deterministic=bool(getattr(config, "deterministic", False)))
    if getattr(config, "quick_test_for_ci", False):
        return quick_test(config)

    if workflows:
        if isinstance(workflows, str):
            workflows = [workflows]
        from .workflows import main_workflows

        return main_workflows(config, list(workflows))

    from ..server.app import run_server

    if getattr(config, "create_directories", None) is None:
        config.create_directories = True  # the server's workspace folders exist from the first start

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
