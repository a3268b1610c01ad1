"""WebSocket protocol: handshake, feature flags, event sequence, routing, binary frames,
reconnect, back-pressure."""
from __future__ import annotations

import asyncio
import json
import struct

from aiohttp import WSMsgType

from server_helpers import collect, frame_type, is_done, preview_prompt, sleep_prompt, text_prompt

FLAGS = {"supports_preview_metadata": True, "supports_manager_v4_ui": True,
         "supports_progress_text_metadata": True}


async def test_handshake_status_then_feature_flags(server):
    ws = await server.client.ws_connect("/ws?clientId=tab-1")
    first = await ws.receive_json(timeout=5)
    assert first == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "tab-1"}}
    await ws.send_json({"type": "feature_flags", "data": FLAGS})
    reply = await ws.receive_json(timeout=5)
    assert reply["type"] == "feature_flags"
    features = await (await server.client.get("/api/features")).json()
    assert reply["data"] == features
    assert features["supports_preview_metadata"] is True
    assert features["max_upload_size"] == 100 * 1024 * 1024
    assert server.ctx.clients.clients["tab-1"].flags == FLAGS
    # later messages are ignored (no second reply, socket stays open)
    await ws.send_json({"type": "feature_flags", "data": {}})
    await ws.send_str("not json")
    await asyncio.sleep(0.1)
    assert not ws.closed
    await ws.close()
    # without clientId a fresh hex sid is minted; /api/ws works too
    ws = await server.client.ws_connect("/api/ws")
    first = await ws.receive_json(timeout=5)
    assert len(first["data"]["sid"]) == 32
    await ws.close()


async def test_event_sequence_of_a_run(server):
    ws, sid = await server.ws(flags=FLAGS)
    first = await server.submit(text_prompt("one"), client_id=sid)
    msgs = await collect(ws, is_done(first["prompt_id"]))
    types = [m["type"] for m in msgs]
    pid = first["prompt_id"]
    # status broadcasts (queue changes) come first; then the run's own events
    run = [m for m in msgs if m["type"] != "status"]
    assert run[0]["type"] == "execution_start" and run[0]["data"]["prompt_id"] == pid
    assert isinstance(run[0]["data"]["timestamp"], int)
    assert run[1]["type"] == "execution_cached" and run[1]["data"]["nodes"] == []
    executing = [m["data"]["node"] for m in run if m["type"] == "executing"]
    assert executing[:2] == ["1", "2"] and executing[-1] is None
    executed = [m for m in run if m["type"] == "executed"]
    assert executed == [{"type": "executed", "data": {"node": "2", "display_node": "2",
                                                      "output": {"text": ["one"]}, "prompt_id": pid}}] or \
        (executed[0]["data"]["node"] == "2" and executed[0]["data"]["output"] == {"text": ["one"]})
    i_success = types.index("execution_success")
    assert i_success < len(types) - 1 and types[-1] == "executing"
    # the queue-empty status follows (broadcasts are throttled to one per 20 ms)
    tail = await collect(ws, lambda m: m["type"] == "status"
                         and m["data"]["status"]["exec_info"]["queue_remaining"] == 0, timeout=2)
    assert tail[-1]["type"] == "status"
    assert any(m["type"] == "progress_state" for m in run)

    # the same prompt again: everything cached
    second = await server.submit(text_prompt("one"), client_id=sid)
    msgs = await collect(ws, is_done(second["prompt_id"]))
    cached = next(m for m in msgs if m["type"] == "execution_cached")
    assert sorted(cached["data"]["nodes"]) == ["1", "2"]
    assert any(m["type"] == "executed" and m["data"]["output"] == {"text": ["one"]} for m in msgs)
    assert any(m["type"] == "execution_success" for m in msgs)
    await ws.close()


async def test_expansion_cycle_is_an_execution_error_and_the_server_keeps_serving(server):
    ws, sid = await server.ws()
    broken = {"1": {"class_type": "ServerTestExpandCycle", "inputs": {"value": "x"}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    first = await server.submit(broken, client_id=sid)
    msgs = await collect(ws, is_done(first["prompt_id"]), timeout=10)
    [error] = [m["data"] for m in msgs if m["type"] == "execution_error"]
    assert error["node_id"] == "1" and error["node_type"] == "ServerTestExpandCycle"
    assert "Dependency cycle" in error["exception_message"]
    second = await server.submit(text_prompt("after"), client_id=sid)
    msgs = await collect(ws, is_done(second["prompt_id"]), timeout=10)
    assert any(m["type"] == "execution_success" for m in msgs)
    await ws.close()


async def test_events_routed_to_owner_only_status_broadcast(server):
    ws_a, sid_a = await server.ws(flags=FLAGS)
    ws_b, sid_b = await server.ws(flags=FLAGS)
    body = await server.submit(text_prompt("mine"), client_id=sid_a)
    await collect(ws_a, is_done(body["prompt_id"]))
    await server.wait_history(body["prompt_id"])
    await asyncio.sleep(0.1)
    got_b = []
    while True:
        try:
            msg = await ws_b.receive(timeout=0.2)
        except asyncio.TimeoutError:
            break
        got_b.append(json.loads(msg.data)["type"])
    assert got_b and set(got_b) == {"status"}
    # API prompts without client_id: executing/executed are broadcast, execution_start is not
    body = await server.submit(text_prompt("api"))
    msgs = await collect(ws_b, is_done(body["prompt_id"]))
    types = {m["type"] for m in msgs}
    assert "executed" in types and "execution_start" not in types and "execution_success" not in types
    await ws_a.close()
    await ws_b.close()


async def test_preview_frames_type4_and_type1_and_progress_text(server):
    ws_meta, sid_meta = await server.ws(flags=FLAGS)
    ws_old, sid_old = await server.ws(flags={})
    ws_none, sid_none = await server.ws()  # never sends feature flags

    for ws, sid, want_meta in ((ws_meta, sid_meta, True), (ws_old, sid_old, False), (ws_none, sid_none, False)):
        body = await server.submit(preview_prompt("PNG", text=sid), client_id=sid)
        msgs = await collect(ws, is_done(body["prompt_id"]))
        frames = [m for m in msgs if isinstance(m, bytes)]
        previews = [f for f in frames if frame_type(f) in (1, 4)]
        texts = [f for f in frames if frame_type(f) == 3]
        assert len(previews) == 1 and len(texts) == 1
        f = previews[0]
        if want_meta:
            assert frame_type(f) == 4
            (meta_len,) = struct.unpack(">I", f[4:8])
            meta = json.loads(f[8:8 + meta_len])
            assert meta["node_id"] == "1" and meta["display_node_id"] == "1"
            assert meta["prompt_id"] == body["prompt_id"] and meta["image_type"] == "image/png"
            image = f[8 + meta_len:]
            assert image.startswith(b"\x89PNG")
            # progress text with prompt id (server advertises supports_progress_text_metadata)
            t = texts[0]
            (plen,) = struct.unpack(">I", t[4:8])
            assert t[8:8 + plen].decode() == body["prompt_id"]
            (nlen,) = struct.unpack(">I", t[8 + plen:12 + plen])
            assert t[12 + plen:12 + plen + nlen] == b"1"
            assert t[12 + plen + nlen:] == b"halfway there"
        else:
            assert frame_type(f) == 1
            assert struct.unpack(">I", f[4:8])[0] == 2  # PNG
            assert f[8:].startswith(b"\x89PNG")
            t = texts[0]
            (nlen,) = struct.unpack(">I", t[4:8])
            assert t[8:8 + nlen] == b"1" and t[8 + nlen:] == b"halfway there"
        assert any(isinstance(m, dict) and m["type"] == "progress" and m["data"]["max"] == 2 for m in msgs)
    # JPEG previews carry format 1 / image/jpeg
    body = await server.submit(preview_prompt("JPEG", text="jpeg"), client_id=sid_meta)
    msgs = await collect(ws_meta, is_done(body["prompt_id"]))
    f = next(m for m in msgs if isinstance(m, bytes) and frame_type(m) == 4)
    (meta_len,) = struct.unpack(">I", f[4:8])
    assert json.loads(f[8:8 + meta_len])["image_type"] == "image/jpeg"
    assert f[8 + meta_len:].startswith(b"\xff\xd8")
    for ws in (ws_meta, ws_old, ws_none):
        await ws.close()


async def test_reconnect_with_same_client_id_resumes(server):
    ws, sid = await server.ws(client_id="tab-r", flags=FLAGS)
    body = await server.submit(sleep_prompt(30, "r"), client_id=sid)
    await collect(ws, lambda m: isinstance(m, dict) and m["type"] == "executing" and m["data"]["node"] == "1")
    await ws.close()
    # reconnect (a page reload keeps its sid): status with the same sid, then the running node
    ws2 = await server.client.ws_connect("/ws?clientId=tab-r")
    first = await ws2.receive_json(timeout=5)
    assert first["type"] == "status" and first["data"]["sid"] == "tab-r"
    assert first["data"]["status"]["exec_info"]["queue_remaining"] == 1
    second = await ws2.receive_json(timeout=5)
    assert second == {"type": "executing", "data": {"node": "1"}}
    # another client does not get the resume message
    ws3, _ = await server.ws(client_id="someone-else")
    await asyncio.sleep(0.1)
    try:
        extra = await ws3.receive(timeout=0.2)
        assert extra.type != WSMsgType.TEXT or json.loads(extra.data)["type"] == "status"
    except asyncio.TimeoutError:
        pass
    # a second connection with the same id replaces the first; events go to the newest
    ws4 = await server.client.ws_connect("/ws?clientId=tab-r")
    assert (await ws4.receive_json(timeout=5))["data"]["sid"] == "tab-r"
    closed = await ws2.receive(timeout=5)
    while closed.type == WSMsgType.TEXT:  # a (throttled) status broadcast may come first
        assert json.loads(closed.data)["type"] == "status"
        closed = await ws2.receive(timeout=5)
    assert closed.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    await server.post_json("/api/interrupt", {})
    msgs = await collect(ws4, is_done(body["prompt_id"]))
    assert any(m["type"] == "execution_interrupted" for m in msgs if isinstance(m, dict))
    for w in (ws3, ws4):
        await w.close()


async def test_custom_node_send_sync_reaches_clients(server):
    from comfyui.compat.server import PromptServer

    ws, sid = await server.ws(flags=FLAGS)
    other, _ = await server.ws(flags=FLAGS)
    PromptServer.instance.send_sync("my.event", {"x": 1}, sid)
    msg = await ws.receive_json(timeout=5)
    assert msg == {"type": "my.event", "data": {"x": 1}}
    PromptServer.instance.send_sync("my.broadcast", {"y": 2})
    assert (await ws.receive_json(timeout=5))["type"] == "my.broadcast"
    assert (await other.receive_json(timeout=5))["type"] == "my.broadcast"
    server.ctx.send_bytes(3, struct.pack(">I", 1) + b"9hello", sid)
    frame = await ws.receive_bytes(timeout=5)
    assert frame_type(frame) == 3 and frame.endswith(b"9hello")
    await ws.close()
    await other.close()


async def test_stalled_client_does_not_block_others(server):
    """A client that never reads its socket must not delay execution or the other clients."""
    from comfyui.server import ws as ws_mod

    stalled = await server.client.ws_connect("/ws?clientId=stalled")
    await stalled.receive_json(timeout=5)  # status, then we never read again
    good, sid = await server.ws(flags=FLAGS)
    # flood the stalled client: large broadcast messages fill its TCP buffers
    blob = "x" * 200_000
    for i in range(60):
        server.ctx.send_json("flood", {"i": i, "blob": blob}, "stalled")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    ids = [(await server.submit(text_prompt(f"s{i}"), client_id=sid))["prompt_id"] for i in range(20)]
    for pid in ids:
        await collect(good, is_done(pid), timeout=10)
    assert loop.time() - t0 < 5
    hist = await (await server.client.get("/api/history")).json()
    assert all(pid in hist for pid in ids)
    # the stalled client is bounded: its queue never grows past the limit
    c = server.ctx.clients.clients.get("stalled")
    assert c is None or len(c.queue) <= ws_mod.QUEUE_LIMIT
    await stalled.close()
    await good.close()


async def test_hopelessly_behind_client_is_closed(server, monkeypatch):
    from comfyui.server import ws as ws_mod

    monkeypatch.setattr(ws_mod, "QUEUE_LIMIT", 5)
    stalled = await server.client.ws_connect("/ws?clientId=behind")
    await stalled.receive_json(timeout=5)
    client = server.ctx.clients.clients["behind"]
    blob = "y" * 500_000
    for i in range(200):
        server.ctx.send_json("flood", {"blob": blob}, "behind")
        await asyncio.sleep(0)
    for _ in range(100):
        if client.closed:
            break
        await asyncio.sleep(0.05)
    assert client.closed
    assert "behind" not in server.ctx.clients.clients or server.ctx.clients.clients["behind"] is not client
    await stalled.close()
