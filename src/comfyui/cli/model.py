"""``comfyui model download|list``: fetch model files into the workspace and see what is there.

    comfyui model download OWNER/REPO PATH/IN/REPO [--type FOLDER]    a Hugging Face file
    comfyui model download hf://OWNER/REPO[@REVISION]/PATH [--type FOLDER]
    comfyui model download https://huggingface.co/OWNER/REPO/resolve/main/PATH
    comfyui model download https://civitai.com/models/ID[?modelVersionId=V] --type loras
    comfyui model download https://example.com/model.safetensors --type checkpoints [--sha256 HEX]
    comfyui model list [--type FOLDER] [--known]

The folder comes from ``--type``, else from the known-models table or the repository path
(``split_files/vae/...``). Any other ``comfyui`` flag (``--base-directory``, ``-c``,
``--extra-model-paths-config``) picks the workspace, as for the server.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

USAGE_EPILOG = "Other comfyui flags (--base-directory, -c CONFIG, --extra-model-paths-config) choose the workspace."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="comfyui model", description="Download and list model files.",
                                     epilog=USAGE_EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{download,list}")
    dl = sub.add_parser("download", help="download a model file into models/<type>", epilog=USAGE_EPILOG,
                        description="Download from a Hugging Face repository (OWNER/REPO FILE, hf://OWNER/REPO"
                                    "[@REV]/FILE or a huggingface.co URL), a CivitAI model page or download URL, or "
                                    "any http(s) URL. Interrupted downloads resume when run again.")
    dl.add_argument("source", help="OWNER/REPO, hf://OWNER/REPO[@REVISION]/PATH, or a URL")
    dl.add_argument("file", nargs="?", help="the file's path in the repository (with OWNER/REPO)")
    dl.add_argument("--type", dest="folder", metavar="FOLDER",
                    help="model folder: checkpoints, loras, vae, text_encoders, diffusion_models, ... "
                         "(default: from the known-models table or the repository path)")
    dl.add_argument("--name", help="file name in the model folder (default: the source's); may have sub-folders")
    dl.add_argument("--sha256", metavar="HEX", help="expected SHA-256; a mismatch deletes the download")
    dl.add_argument("--force", action="store_true", help="download again even when the file is there")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    ls = sub.add_parser("list", help="list the model files in the workspace", epilog=USAGE_EPILOG)
    ls.add_argument("--type", dest="folder", metavar="FOLDER", help="only this model folder")
    ls.add_argument("--known", action="store_true",
                    help="list the known models (templates' and tutorials' files) instead, with their sources "
                         "and whether each is present")
    return parser


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_download(opts: argparse.Namespace) -> int:
    from .. import downloads

    source = downloads.parse_source(opts.source, opts.file)
    done = downloads.download(source, opts.folder, opts.name, sha256=opts.sha256, force=opts.force,
                              progress=not opts.no_progress)
    print(done.path)
    return 0


def cmd_list(opts: argparse.Namespace) -> int:
    from .. import downloads, known_models, paths

    folders = [paths.map_legacy(opts.folder)] if opts.folder else downloads.model_folders()
    unknown = [f for f in folders if f not in downloads.model_folders()]
    if unknown:
        print(f"error: unknown model type {unknown[0]!r}; one of: {', '.join(downloads.model_folders())}",
              file=sys.stderr)
        return 2
    if opts.known:
        for (folder, name), entry in sorted(known_models.table().items()):
            if folder in folders:
                state = "present" if paths.get_full_path(folder, name) else "missing"
                print(f"{folder}/{name}\t{state}\t{entry.url}")
        return 0
    for folder in folders:
        for name in paths.get_filename_list(folder):
            full = paths.get_full_path(folder, name)
            if full:
                print(f"{folder}/{name}\t{_size(os.path.getsize(full))}\t{full}")
    return 0


def main_model(argv: Sequence[str]) -> int:
    from .. import downloads
    from ..config import load_config
    from ..runtime import Runtime
    from .main import setup_logging

    opts, rest = _parser().parse_known_args(list(argv))
    config = load_config(rest)
    setup_logging(config)
    with Runtime(config).active():
        try:
            return cmd_download(opts) if opts.command == "download" else cmd_list(opts)
        except downloads.DownloadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume the download", file=sys.stderr)
            return 130
