"""``comfyui node``: manage the custom node packs of a workspace.

    comfyui node install ID|GIT_URL|pip:PACKAGE ... [--version V] [--no-deps] [--pip]
    comfyui node uninstall NAME ...
    comfyui node update NAME ... | --all
    comfyui node disable NAME ... / comfyui node enable NAME ...
    comfyui node list [--json]

The workspace, the registry (``--registry-url`` / ``COMFYUI_REGISTRY_URL`` / ``registry-url`` in
the config file) and the other settings come from the usual flags, environment and config
file, given before or after the subcommand. The work is :class:`comfyui.nodes.packs.PackManager`'s.
Exit status: 0 when everything named succeeded, 1 when anything failed, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence


def _common_options() -> argparse.ArgumentParser:
    """Options accepted before and after the subcommand (SUPPRESS: a value given before is
    not reset by the subcommand's parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-w", "--cwd", "--base-directory", dest="base_directory", metavar="BASE_DIRECTORY",
                        default=argparse.SUPPRESS, help="workspace whose custom_nodes/ is managed")
    common.add_argument("-c", "--config", metavar="CONFIG_FILE", default=argparse.SUPPRESS,
                        help="config file (YAML or JSON)")
    common.add_argument("--registry-url", metavar="URL", default=argparse.SUPPRESS,
                        help="Comfy registry API (default https://api.comfy.org)")
    common.add_argument("--python", metavar="PATH", default=argparse.SUPPRESS,
                        help="interpreter whose environment gets pip packs and requirements (default: this one)")
    return common


# the config flags forwarded to load_config
_CONFIG_FLAGS = {"base_directory": "--base-directory", "config": "--config", "registry_url": "--registry-url"}


def build_node_parser() -> argparse.ArgumentParser:
    common = _common_options()
    p = argparse.ArgumentParser(prog="comfyui node", description="Manage custom node packs (custom_nodes/).",
                                parents=[common])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    install = sub.add_parser("install", parents=[common], help="install packs by registry id, git URL or pip package")
    install.add_argument("packs", nargs="+", metavar="PACK")
    install.add_argument("--version", default=None,
                         help="registry version, or git branch/tag/commit (one pack only)")
    install.add_argument("--no-deps", action="store_true", help="don't pip install the pack's requirements.txt")
    install.add_argument("--pip", action="store_true",
                         help="the packs are pip requirements (names, wheels, paths) exposing comfyui.custom_nodes")
    uninstall = sub.add_parser("uninstall", parents=[common], help="remove packs (folders, or pip packages)")
    uninstall.add_argument("packs", nargs="+", metavar="NAME")
    update = sub.add_parser("update", parents=[common], help="update packs to the registry's latest version or the git remote's head")
    update.add_argument("packs", nargs="*", metavar="NAME")
    update.add_argument("--all", action="store_true", help="update every installed pack")
    update.add_argument("--version", default=None, help="registry version or git ref to move to (one pack only)")
    update.add_argument("--no-deps", action="store_true", help="don't pip install the pack's requirements.txt")
    for name, text in (("disable", "move packs to custom_nodes/.disabled/"), ("enable", "move disabled packs back")):
        s = sub.add_parser(name, parents=[common], help=text)
        s.add_argument("packs", nargs="+", metavar="NAME")
    lst = sub.add_parser("list", parents=[common], help="list installed packs")
    lst.add_argument("--json", action="store_true", help="one JSON array")
    return p


def make_manager(config, python: str | None = None, echo=None):
    from .. import paths
    from ..nodes.packs import PackManager

    config.apply_paths()
    return PackManager(paths.get_custom_nodes_directories()[0], config.registry_url, python=python, echo=echo)


def main_node(argv: Sequence[str]) -> int:
    from ..config import ConfigError, load_config
    from ..nodes.packs import PackError

    parser = build_node_parser()
    args = parser.parse_args(list(argv))
    forwarded = []
    for dest, flag in _CONFIG_FLAGS.items():
        if hasattr(args, dest):
            forwarded += [flag, getattr(args, dest)]
    try:
        config = load_config(forwarded)
    except ConfigError as e:
        print(f"comfyui node: {e}", file=sys.stderr)
        return 2
    if getattr(args, "version", None) and len(args.packs) != 1:
        parser.error("--version applies to one pack at a time")

    def echo(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    manager = make_manager(config, getattr(args, "python", None), echo)
    if args.command == "list":
        try:
            packs = manager.list()
        except PackError as e:
            echo(f"error: {e}")
            return 1
        if args.json:
            print(json.dumps([p.to_dict() for p in packs], indent=1))
        elif not packs:
            print(f"no custom node packs in {manager.root}")
        else:
            for p in packs:
                where = p.id and f"registry:{p.id}" or p.url or (p.path if p.source != "pip" else "pip")
                print(f"{p.name:32} {'enabled' if p.enabled else 'disabled':9} {p.source:9} "
                      f"{p.version or '-':12} {where}")
        return 0

    names = list(args.packs)
    if args.command == "update" and args.all:
        names = [p.name for p in manager.list() if p.enabled and p.source in ("registry", "git")]
        if not names:
            print("nothing to update: no pack was installed from the registry or git")
            return 0
    elif args.command == "update" and not names:
        parser.error("name the packs to update, or give --all")

    failed = 0
    for name in names:
        try:
            if args.command == "install":
                manager.install(name, version=args.version, no_deps=args.no_deps, pip=args.pip)
            elif args.command == "uninstall":
                manager.uninstall(name)
            elif args.command == "update":
                now, before = manager.update(name, version=args.version, no_deps=args.no_deps)
                if before is None:
                    echo(f"{now.name} is up to date ({now.version or 'unknown version'})")
            elif args.command == "disable":
                manager.disable(name)
            elif args.command == "enable":
                manager.enable(name)
        except PackError as e:
            echo(f"error: {e}")
            failed += 1
    if failed and args.command in ("install", "update") and not failed == len(names):
        echo(f"{failed} of {len(names)} packs failed")
    if not failed and args.command in ("install", "uninstall", "update", "disable", "enable"):
        echo("restart the server to load the changes")
    return 1 if failed else 0
