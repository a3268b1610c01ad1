"""Build ``src/comfyui/data/known_models.json``: the model files the official templates
(``comfyui-workflow-templates-json``) and this repository's tutorials (``examples/tutorials``)
name, with where to download each.

Workflows list their models in node ``properties.models`` entries (``name``, ``url``,
``directory``, sometimes ``hash`` + ``hash_type``). Kept: entries whose URL is a file download
(a Hugging Face ``/resolve/`` URL or a CivitAI ``/api/download/`` URL) into a model folder this
implementation has. A name several workflows download from different places gets the URL most of
them use (ties: the first in sort order); a SHA-256 any of them gives is kept.

    .venv/bin/python scripts/build_known_models.py            # rewrite the table
    .venv/bin/python scripts/build_known_models.py --check    # exit 1 when it is out of date
"""
from __future__ import annotations

import collections
import importlib.resources
import json
import sys
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "comfyui" / "data" / "known_models.json"
TUTORIALS = ROOT / "examples" / "tutorials"


def model_entries(node: Any) -> Iterator[dict]:
    """Every ``models`` entry in a workflow (nodes, subgraphs, anywhere in the JSON)."""
    if isinstance(node, dict):
        models = node.get("models")
        if isinstance(models, list):
            yield from (m for m in models if isinstance(m, dict))
        for value in node.values():
            yield from model_entries(value)
    elif isinstance(node, list):
        for value in node:
            yield from model_entries(value)


def workflow_files() -> list[Path]:
    import comfyui_workflow_templates_json as templates

    folder = Path(str(importlib.resources.files(templates)), "templates")
    return sorted(folder.glob("*.json")) + sorted(TUTORIALS.glob("*.workflow.json"))


def is_download_url(url: str) -> bool:
    return (url.startswith(("https://huggingface.co/", "https://hf.co/")) and "/resolve/" in url) \
        or url.startswith("https://civitai.com/api/download/models/")


def build() -> list[dict]:
    sys.path.insert(0, str(ROOT / "src"))
    from comfyui.paths import _STANDARD_FOLDERS, map_legacy

    folders = {name for name, _dirs, _exts in _STANDARD_FOLDERS}
    urls: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    hashes: dict[tuple[str, str], str] = {}
    for path in workflow_files():
        try:
            workflow = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        for entry in model_entries(workflow):
            name, url, directory = entry.get("name"), entry.get("url"), entry.get("directory")
            if not (isinstance(name, str) and isinstance(url, str) and isinstance(directory, str)):
                continue
            directory = map_legacy(directory)
            if directory not in folders or not is_download_url(url):
                continue
            key = (directory, name)
            urls[key][url.removesuffix("?download=true")] += 1
            if str(entry.get("hash_type", "")).lower() == "sha256" and entry.get("hash"):
                hashes[key] = str(entry["hash"]).lower()
    table = []
    for (directory, name), counts in sorted(urls.items()):
        url = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        row = {"name": name, "directory": directory, "url": url}
        if (directory, name) in hashes:
            row["sha256"] = hashes[(directory, name)]
        table.append(row)
    return table


def render(table: list[dict]) -> str:
    return "[\n" + ",\n".join(json.dumps(row, ensure_ascii=False) for row in table) + "\n]\n"


def main(argv: list[str]) -> int:
    text = render(build())
    if "--check" in argv:
        if TABLE.read_text(encoding="utf-8") != text:
            print(f"{TABLE} is out of date: run scripts/build_known_models.py", file=sys.stderr)
            return 1
        return 0
    TABLE.write_text(text, encoding="utf-8")
    print(f"{TABLE}: {text.count(chr(10)) - 2} models")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
