"""The README stays true: its first section is the two set-up commands, every example path
and every ``--flag`` it names exists, and the model folders it names are the workspace's."""
import pathlib
import re

from comfyui.cli.node import build_node_parser
from comfyui.config import build_parser
from comfyui.paths import _STANDARD_FOLDERS

ROOT = pathlib.Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def test_setup_section_is_two_commands():
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", setup, re.S)
    assert len(blocks) == 2 and all(len(b.strip().splitlines()) == 1 for b in blocks)
    assert blocks[0].strip().endswith(".venv/bin/comfyui") and "pytest" in blocks[1]


def model_subcommands():
    """The parsers of ``comfyui model download|list`` (their flags are the README's too)."""
    import argparse

    from comfyui.cli.model import _parser

    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices.values())


def test_named_examples_and_flags_exist():
    for path in set(re.findall(r"`(examples/[^`\s]+)`", README)) | set(re.findall(r"comfyui --workflows (examples/[^`\s]+)", README)):
        assert (ROOT / path.rstrip("/")).exists(), path
    options = {o for a in build_parser()._actions for o in a.option_strings}
    options |= {o for sub in model_subcommands() for a in sub._actions for o in a.option_strings}
    node_parser = build_node_parser()  # `comfyui node ...` and its subcommands' flags
    parsers = [node_parser] + [sub for a in node_parser._actions if a.choices and isinstance(a.choices, dict)
                               for sub in a.choices.values()]
    options |= {o for p in parsers for a in p._actions for o in a.option_strings}
    pip_options = {"--index-url"}
    for flag in set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]+)", README)) - pip_options:
        assert flag in options, flag


def test_named_model_folders_are_the_workspace_folders():
    folders = {d for _, subdirs, _ in _STANDARD_FOLDERS for d in subdirs}
    section = README.split("## Where models go", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`models/([a-z_]+)/`", section)) | set(re.findall(r"\(or `([a-z_]+)/`\)", section))
    assert named and named <= folders, named - folders
