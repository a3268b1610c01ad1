"""Measure how custom node packs load and run on a ComfyUI-compatible server.

Given a folder of packs (each a checkout, as in ComfyUI's ``custom_nodes``), this starts a
server on a scratch workspace whose ``custom_nodes`` links to them, reads ``/object_info``,
counts each pack's nodes (by their ``python_module``, ``custom_nodes.<Pack>``), reads the import
failures from the server's log, and runs the small API-format workflows given for a pack
(``<workflows>/<Pack>.json``: ``{"name": prompt, ...}``), each to its end. It works the same
against upstream ComfyUI (``--server "python /path/to/ComfyUI/main.py --cpu"``), which gives
the packs' own node counts to compare with.

    python bench/packs_compat.py --packs /tmp/packs/ws/custom_nodes --workspace /tmp/packs/run-ours \\
        --workflows bench/packs_workflows --out /tmp/packs/ours.json
    python bench/packs_compat.py --packs ... --workspace /tmp/packs/run-upstream \\
        --server "/tmp/packs-up-venv/bin/python /tmp/packs-comfy/main.py --cpu" --out /tmp/packs/upstream.json
    python bench/packs_compat.py --table /tmp/packs/ours.json --reference /tmp/packs/upstream.json

The packs themselves are not part of this repository (fetch them yourself).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, body: dict | None = None, timeout: float = 30) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def link_packs(packs_dir: str, workspace: str) -> list[str]:
    """Link every pack of ``packs_dir`` into ``<workspace>/custom_nodes``; the pack names."""
    target = os.path.join(workspace, "custom_nodes")
    os.makedirs(target, exist_ok=True)
    names = []
    for name in sorted(os.listdir(packs_dir)):
        source = os.path.join(packs_dir, name)
        if name.startswith(".") or not os.path.isdir(source):
            continue
        link = os.path.join(target, name)
        if not os.path.lexists(link):
            os.symlink(source, link)
        names.append(name)
    return names


def start_server(command: str, workspace: str, port: int, log_path: str) -> subprocess.Popen:
    args = shlex.split(command) + ["--base-directory", workspace, "--port", str(port), "--listen", "127.0.0.1"]
    log = open(log_path, "w")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workspace)


def wait_until_up(base: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            http(base + "/system_stats", timeout=5)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    raise TimeoutError("server did not answer in time")


def failed_imports(log_text: str, packs: list[str]) -> dict[str, str]:
    """Pack -> first line of the error, from the log lines both servers write on a failed import
    (ours: "Cannot import custom node pack <Pack> (...)", upstream: "Cannot import <path> module
    for custom nodes: <error>")."""
    failures = {}
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        for pack in packs:
            if pack in failures:
                continue
            if f"Cannot import custom node pack {pack} (" in line:
                # our log: the traceback follows; its last line is the error
                tail = [entry for entry in lines[i + 1:i + 200] if entry and not entry.startswith(" ")]
                failures[pack] = next((t for t in tail if "Error" in t or "Exception" in t), line)[:300]
            elif "Cannot import" in line and f"/{pack} module for custom nodes" in line:
                failures[pack] = line.split("module for custom nodes:", 1)[-1].strip()[:300]
    return failures


def run_workflow(base: str, prompt: dict, timeout: float) -> tuple[bool, str]:
    client_id = uuid.uuid4().hex
    try:
        queued = http(base + "/prompt", {"prompt": prompt, "client_id": client_id})
    except urllib.error.HTTPError as e:
        return False, f"rejected: {e.code} {e.read().decode(errors='replace')[:300]}"
    prompt_id = queued["prompt_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = http(f"{base}/history/{prompt_id}")
        if prompt_id in history:
            status = history[prompt_id].get("status", {})
            if status.get("status_str") == "success":
                return True, "success"
            errors = [m[1] for m in status.get("messages", []) if m[0] == "execution_error"]
            if errors:
                e = errors[0]
                return False, f"{e.get('node_type')}: {e.get('exception_type')}: {e.get('exception_message', '')[:200]}"
            return False, json.dumps(status)[:300]
        time.sleep(0.5)
    return False, "timed out"


def measure(args: argparse.Namespace) -> dict:
    os.makedirs(args.workspace, exist_ok=True)
    packs = link_packs(args.packs, args.workspace)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = os.path.join(args.workspace, "server.log")
    started = time.monotonic()
    proc = start_server(args.server, args.workspace, port, log_path)
    try:
        wait_until_up(base, proc, args.start_timeout)
        start_seconds = time.monotonic() - started
        info = http(base + "/object_info", timeout=120)
        by_pack: dict[str, list[str]] = {p: [] for p in packs}
        for node, spec in info.items():
            module = str(spec.get("python_module", ""))
            if module.startswith("custom_nodes."):
                pack = module.split(".", 1)[1]
                by_pack.setdefault(pack, []).append(node)
        workflows: dict[str, dict] = {}
        for pack in packs:
            path = os.path.join(args.workflows, f"{pack}.json") if args.workflows else None
            if path and os.path.isfile(path):
                with open(path) as f:
                    for name, prompt in json.load(f).items():
                        ok, detail = run_workflow(base, prompt, args.run_timeout)
                        workflows.setdefault(pack, {})[name] = {"ok": ok, "detail": detail}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    with open(log_path, errors="replace") as f:
        failures = failed_imports(f.read(), packs)
    return {"server": args.server, "start_seconds": round(start_seconds, 1),
            "packs": {p: {"nodes": sorted(by_pack.get(p, [])), "import_error": failures.get(p),
                          "workflows": workflows.get(p, {})} for p in packs}}


def table(result: dict, reference: dict | None) -> str:
    rows = ["| pack | imports cleanly | nodes registered | pack's own count | small workflow |",
            "| --- | --- | --- | --- | --- |"]
    total = total_ref = 0
    for pack, r in result["packs"].items():
        ref = (reference or {}).get("packs", {}).get(pack)
        count = len(r["nodes"])
        total += count
        ref_count = len(ref["nodes"]) if ref else None
        total_ref += ref_count or 0
        clean = "yes" if not r["import_error"] else f"no: {r['import_error']}"
        runs = "; ".join(f"{name}: {'runs' if w['ok'] else 'fails: ' + w['detail']}"
                         for name, w in r["workflows"].items()) or "-"
        rows.append(f"| {pack} | {clean} | {count} | {ref_count if ref_count is not None else '?'} | {runs} |")
    rows.append(f"| **total** | | **{total}** | **{total_ref}** | |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packs", help="folder holding the pack checkouts")
    parser.add_argument("--workspace", help="scratch workspace (its custom_nodes links to the packs)")
    parser.add_argument("--server", default=os.path.join(os.path.dirname(sys.executable), "comfyui"),
                        help="command starting the server (gets --base-directory, --port, --listen)")
    parser.add_argument("--workflows", help="folder of <Pack>.json files: {name: API prompt}")
    parser.add_argument("--out", help="write the measurement here (JSON)")
    parser.add_argument("--table", help="print the markdown table of a measurement file")
    parser.add_argument("--reference", help="a measurement under upstream ComfyUI, for the pack's own counts")
    parser.add_argument("--start-timeout", type=float, default=600)
    parser.add_argument("--run-timeout", type=float, default=300)
    args = parser.parse_args()
    if args.table:
        with open(args.table) as f:
            result = json.load(f)
        reference = None
        if args.reference:
            with open(args.reference) as f:
                reference = json.load(f)
        print(table(result, reference))
        return
    if not (args.packs and args.workspace):
        parser.error("--packs and --workspace are required to measure")
    result = measure(args)
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(table(result, None))


if __name__ == "__main__":
    main()
