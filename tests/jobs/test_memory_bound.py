"""Memory is bounded by size, not count: cycles of ten 20 MB prompts and a history clear leave
a real server's resident memory where it started (the engine kept the full entries of its last
256 finished jobs for ``wait``; they grew it to gigabytes)."""
import json
import os

from _proc import ServerProcess, trivial_prompt, wait_until


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def big_body(tag: str, n: int) -> bytes:
    """A 20 MB prompt: its extra_data carries a workflow of many small objects (as the
    frontend's extra_pnginfo does) and a 19 MB note."""
    nodes = [{"id": i, "type": "KSampler", "pos": [i, i], "size": [315, 262], "flags": {},
              "order": i, "mode": 0, "inputs": [{"name": "model", "link": i}],
              "widgets_values": [i, "fixed", 20, 8.0, "euler", "normal", 1.0], "tag": f"{tag}-{n}-{i}"}
             for i in range(4_000)]
    note = f"{tag}-{n}-" + "z" * 19_000_000
    body = {"prompt": trivial_prompt(f"{tag}-{n}"),
            "extra_data": {"extra_pnginfo": {"workflow": {"id": f"wf-{tag}-{n}", "nodes": nodes, "note": note}}}}
    return json.dumps(body).encode()


def test_six_cycles_of_ten_20mb_prompts_and_a_history_clear_keep_rss_flat(tmp_path):
    server = ServerProcess(str(tmp_path), None, "--max-upload-size", "64").start()
    try:
        client = server.client(timeout=120)
        client.submit(trivial_prompt("warm-up"))
        body = big_body("warm", 0)
        assert len(body) > 19_000_000
        start = None
        for cycle in range(7):
            ids = []
            for n in range(10):
                r = client.request("POST", "/api/prompt", raw=big_body(f"c{cycle}", n),
                                   headers={"Content-Type": "application/json"})
                assert r.status == 200, r
                ids.append(r.json()["prompt_id"])
            wait_until(lambda: all(client.get(f"/api/jobs/{i}").json().get("status") == "completed" for i in ids),
                       timeout=120, interval=0.5, what="the cycle's prompts")
            assert client.post("/api/history", {"clear": True}).status == 200
            rss = rss_mb(server.proc.pid)
            print(f"cycle {cycle}: {rss:.0f} MB")
            if start is None:  # after the first cycle: lazily imported code and warmed caches
                start = rss
        assert rss - start < 100, f"RSS grew from {start:.0f} MB to {rss:.0f} MB over 6 cycles"
    finally:
        server.stop()
