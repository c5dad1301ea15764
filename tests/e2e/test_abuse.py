"""Abuse over every transport — stdio, WebSocket and Streamable HTTP (--listen):
20 MiB lines, frames and bodies; invalid UTF-8; 100 000-deep nesting;
batches; `id: null` and odd ids; duplicate ids in flight; cancellation of
unknown or finished ids; thousands of pipelined requests; half-open
connections; hundreds of sessions opened and dropped. After each, the server
must still answer ping, hold no leftover sockets, and at the end exit 0 with
no sanitizer report (ctest runs this file against the ASan build too).
Python standard library only; loopback only."""

import json
import os
import socket
import struct
import time

from harness import TOKEN, Fake, Server, Suite
from test_listener import ACCEPT, INIT, WS, Listener, open_post_stream, sse_events

suite = Suite("abuse")
fake = None
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "LeakSanitizer", "runtime error:")
MIB = 1 << 20

PING = {"jsonrpc": "2.0", "id": "p", "method": "ping"}

# Bad inputs every transport gets, each answered by exactly one JSON-RPC error.
DEEP_ARRAY = b"[" * 100000 + b"]" * 100000
DEEP_OBJECT = (b'{"jsonrpc":"2.0","id":"deep","method":"ping","params":{"x":' +
               b'{"a":' * 100000 + b"1" + b"}" * 100000 + b"}}")
INVALID_UTF8 = [
    b'{"jsonrpc":"2.0","id":"u1","method":"ping","params":{"x":"\xff\xfe"}}',
    b'{"jsonrpc":"2.0","id":"u2","method":"ping","params":{"\xc0\xaf":1}}',       # overlong
    b'{"jsonrpc":"2.0","id":"u3","method":"ping","params":{"x":"\xed\xa0\x80"}}',  # surrogate
    b'{"jsonrpc":"2.0","id":"u4","method":"ping","params":{"x":"\xe2\x82"}}',      # truncated
]
HUGE = b'{"jsonrpc":"2.0","id":"huge","method":"ping","params":{"x":"' + b"a" * (20 * MIB) + b'"}}'


def check_exit(rc, err):
    assert rc == 0, f"exit status {rc}; stderr tail: {err[-3000:]}"
    for marker in SANITIZER_MARKERS:
        assert marker not in err, err[-6000:]


def finish(s):
    s.close_stdin()
    rc = s.wait_exit(30)
    s.reader.join(5)
    check_exit(rc, s.stderr())
    for line in s.stdout_bytes().splitlines():
        json.loads(line)  # stdout carries nothing but JSON-RPC


def stop(srv):
    """SIGTERM: exit 0 within the listener's limit, no sanitizer report."""
    if srv.proc.poll() is None:
        rc = srv.stop(timeout=30)
    else:
        rc = srv.proc.returncode
        srv.err.close()
    with open(srv.errpath, "rb") as f:
        check_exit(rc, f.read().decode(errors="replace"))


def fds_of(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle_fds(pid, baseline, slack=2, timeout=10):
    """Waits until the process holds no more descriptors than baseline+slack."""
    deadline = time.monotonic() + timeout
    while True:
        n = fds_of(pid)
        if n <= baseline + slack or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# ---- stdio -------------------------------------------------------------------------

def stdio_server(config=None, env=None):
    s = Server(config=config or {"targets": {}}, env=env)
    return s


def null_errors(s):
    with s.cond:
        return sorted(m["error"]["code"] for _, m in s.responses.get("null", []))


@suite.test
def stdio_huge_line_invalid_utf8_and_deep_nesting():
    s = stdio_server()
    try:
        s.initialize()
        s.send_raw(HUGE + b"\n")
        assert s.request("ping", timeout=60).get("result") == {}
        assert null_errors(s) == [-32600], null_errors(s)  # over 4 MiB: invalid request
        with s.cond:
            [(_, big)] = s.responses["null"]
        assert "4 MiB" in big["error"]["message"], big
        for line in INVALID_UTF8:
            s.send_raw(line + b"\n")
        s.send_raw(DEEP_ARRAY + b"\n")
        s.send_raw(DEEP_OBJECT + b"\n")
        assert s.request("ping").get("result") == {}
        assert null_errors(s) == sorted([-32600] + [-32700] * 6), null_errors(s)
        for rid in ("huge", "u1", "u2", "u3", "u4", "deep"):
            assert json.dumps(rid) not in s.responses, rid  # never parsed, never run
        # a huge line arriving in small pieces is no different
        for i in range(0, len(HUGE), 1 << 18):
            s.send_raw(HUGE[i:i + (1 << 18)])
        s.send_raw(b"\n")
        assert s.request("ping", timeout=60).get("result") == {}
        assert null_errors(s) == sorted([-32600] * 2 + [-32700] * 6), null_errors(s)
        finish(s)
    finally:
        s.close()


@suite.test
def stdio_batches_ids_and_nulls():
    s = stdio_server()
    try:
        s.initialize("2025-11-25")
        s.send([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
        s.send_raw(b"[]\n")
        s.send({"jsonrpc": "2.0", "id": None, "method": "ping"})
        for bad in ({}, [], True, 1.5):
            s.send({"jsonrpc": "2.0", "id": bad, "method": "ping"})
        assert s.request("ping").get("result") == {}
        assert null_errors(s) == [-32600] * 7, null_errors(s)
        # valid if unusual ids are echoed exactly
        for rid in (0, -1, "", "x" * 100000, 2 ** 53):
            assert s.request("ping", rid=rid)["id"] == rid
    finally:
        finish(s)
        s.close()
    s = stdio_server()
    try:
        s.initialize("2025-03-26")   # batches are served before 2025-06-18
        s.send([{"jsonrpc": "2.0", "id": 10000 + i, "method": "ping"} for i in range(1000)])
        s.send([{"jsonrpc": "2.0", "method": "notifications/initialized"}])  # no answer
        s.send([1, {"jsonrpc": "2.0"}, {"jsonrpc": "2.0", "id": "ok", "method": "ping"},
                {"jsonrpc": "2.0", "id": None, "method": "ping"}])
        s.send_raw(b"[]\n")
        assert s.request("ping").get("result") == {}
        deadline = time.monotonic() + 20
        while len(s.responses.get("batch", [])) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        batches = [b for _, b in s.responses.get("batch", [])]
        assert len(batches) == 2, batches
        big, mixed = batches
        assert sorted(m["id"] for m in big) == list(range(10000, 11000))
        assert all(m["result"] == {} for m in big)
        assert len(mixed) == 4, mixed
        assert [m["id"] for m in mixed if "result" in m] == ["ok"], mixed
        assert sorted(m["error"]["code"] for m in mixed if "error" in m) == [-32600] * 3
        assert null_errors(s).count(-32600) >= 4  # 3 in the mixed batch + the empty one
    finally:
        finish(s)
        s.close()


def showly_target(fk=None):
    """A config with one Showly target on `fk` (default: the suite's fake)."""
    return {"targets": {"web": {"provider": "showly", "siteId": "site_abuse",
                                "tokenEnv": "SHOWLY_TOKEN", "baseUrl": (fk or fake).url}}}


def hanging_deployment():
    return fake.call("POST", "/_fake/deployments",
                     {"siteId": "site_abuse", "knobs": {"hang": True, "keepalive_ms": 200}})


def closed_streams(dep_id):
    return [c for c in fake.call("GET", "/_fake/streams")["closed"] if c["deploymentId"] == dep_id]


def wait_closed(dep_id, timeout=3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = closed_streams(dep_id)
        if done:
            return done
        time.sleep(0.05)
    return []


@suite.test
def stdio_duplicate_ids_and_cancelling_unknown_or_finished_ids():
    s = stdio_server(config=showly_target(), env={"SHOWLY_TOKEN": TOKEN})
    try:
        s.initialize()
        dep = hanging_deployment()
        call = {"name": "stream_events", "arguments": {"deploymentId": dep["id"]}}
        s.request_async("tools/call", call, progress="dup", rid=7)
        s.wait_notes("notifications/progress", 1, token="dup")
        # the same id again while the first runs: refused, the first untouched
        s.request_async("tools/call", call, rid=7)
        r = s.wait_response(7)
        assert r["error"]["code"] == -32600 and "already" in r["error"]["message"], r
        assert fake.call("GET", "/_fake/streams")["open"] == 1
        # cancellations that match nothing are ignored, without an answer
        for params in ({"requestId": 424242}, {"requestId": "7"}, {"requestId": None},
                       {"requestId": {"x": 1}}, {}, {"requestId": 7.0}):
            s.notify("notifications/cancelled", params)
        s.notify("notifications/cancelled", None)
        s.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": "junk"})
        assert s.request("ping").get("result") == {}
        assert fake.call("GET", "/_fake/streams")["open"] == 1, "an unrelated cancel hit the call"
        # a finished call's id: cancelling it does nothing, and the id is free again
        done = s.call("list_targets")
        assert not done.get("isError")
        finished_id = s.next_id - 1
        s.notify("notifications/cancelled", {"requestId": finished_id})
        assert s.request("ping").get("result") == {}
        # now cancel the real one: its upstream closes and it is never answered
        t0 = time.time()
        s.notify("notifications/cancelled", {"requestId": 7})
        closed = wait_closed(dep["id"])
        assert closed and closed[0]["reason"] == "client_closed", closed
        assert closed[0]["closedAt"] - t0 < 1.0
        time.sleep(0.3)
        assert len(s.responses.get("7", [])) == 1, "only the duplicate was answered"
        # cancelling it twice, and reusing its id afterwards, are both fine
        s.notify("notifications/cancelled", {"requestId": 7})
        s.request_async("ping", rid=7)
        deadline = time.monotonic() + 10
        while len(s.responses.get("7", [])) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert s.responses["7"][1][1] == {"jsonrpc": "2.0", "id": 7, "result": {}}
        finish(s)
    finally:
        s.close()


@suite.test
def stdio_5000_pipelined_requests_all_answered():
    s = stdio_server()
    try:
        s.initialize()
        n = 5000
        kinds = ("ping", "tools/list", "tools/call")
        out = []
        for i in range(n):
            m = {"jsonrpc": "2.0", "id": 100000 + i, "method": kinds[i % 3]}
            if m["method"] == "tools/call":
                m["params"] = {"name": "list_targets", "arguments": {}}
            out.append(json.dumps(m))
        s.send_raw("\n".join(out) + "\n")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with s.cond:
                got = sum(1 for i in range(n) if json.dumps(100000 + i) in s.responses)
            if got == n:
                break
            time.sleep(0.05)
        assert got == n, f"{got} of {n} answered"
        with s.cond:
            for i in range(n):
                [(_, r)] = s.responses[json.dumps(100000 + i)]
                assert "result" in r, r
        assert s.request("ping").get("result") == {}
        finish(s)
    finally:
        s.close()


# ---- WebSocket -------------------------------------------------------------------

def ws_init(srv, version="2025-11-25"):
    ws = WS(srv)
    assert ws.status == 101, ws.head
    init = json.loads(json.dumps(INIT))
    init["params"]["protocolVersion"] = version
    ws.send(init)
    assert ws.recv()["id"] == 1
    ws.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    return ws


def ws_ping_ok(srv):
    ws = ws_init(srv)
    ws.send(PING)
    assert ws.recv() == {"jsonrpc": "2.0", "id": "p", "result": {}}
    ws.close()


def http_ping_ok(srv):
    sid = srv.initialize()
    st, _, b = srv.request("POST", PING, {"Mcp-Session-Id": sid})
    assert st == 200 and json.loads(b)["result"] == {}, (st, b)
    assert srv.request("DELETE", headers={"Mcp-Session-Id": sid})[0] == 200


def ws_send_raw_frame(ws, payload):
    ws.send_frame(0x1, payload)


@suite.test
def websocket_oversized_invalid_and_deep_messages():
    srv = Listener()
    try:
        ws = ws_init(srv)
        for line in INVALID_UTF8 + [DEEP_ARRAY, DEEP_OBJECT]:
            ws_send_raw_frame(ws, line)
        # (RFC 6455 would also allow closing with 1007 on invalid UTF-8; the
        # server answers each message with a parse error and keeps the session)
        answers = [ws.recv() for _ in range(6)]
        assert [(m["id"], m["error"]["code"]) for m in answers] == [(None, -32700)] * 6, answers
        assert "depth" in answers[4]["error"]["message"], answers[4]
        ws.send(PING)
        assert ws.recv()["id"] == "p"
        ws.close()
        # one 20 MiB frame: closed with 1009 (message too big), nothing else breaks
        ws = ws_init(srv)
        try:
            ws.send_frame(0x1, HUGE)
        except OSError:
            pass
        assert ws.close_code() == 1009
        ws.close()
        # batches and ids
        ws = ws_init(srv)
        ws.send([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
        assert ws.recv()["error"]["code"] == -32600
        ws.send({"jsonrpc": "2.0", "id": None, "method": "ping"})
        r = ws.recv()
        assert r["id"] is None and r["error"]["code"] == -32600, r
        ws_send_raw_frame(ws, b"[]")
        assert ws.recv()["error"]["code"] == -32600
        ws.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}})
        ws.send(PING)
        assert ws.recv()["id"] == "p"
        ws.close()
        ws = ws_init(srv, "2025-03-26")
        ws.send([{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(500)])
        batch = ws.recv()
        assert sorted(m["id"] for m in batch) == list(range(500)), batch[:3]
        ws.close()
        ws_ping_ok(srv)
        http_ping_ok(srv)
    finally:
        stop(srv)


@suite.test
def websocket_5000_pipelined_pings_and_duplicate_ids():
    fk = Fake("showly")
    cfg = showly_target(fk)
    srv = Listener(config=cfg)
    try:
        ws = ws_init(srv)
        n = 5000
        frames = b""
        for i in range(n):
            payload = json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}).encode()
            mask = os.urandom(4)
            frames += bytes([0x81, 0x80 | len(payload)]) + mask + \
                bytes(b ^ mask[j % 4] for j, b in enumerate(payload))
        ws.sock.sendall(frames)
        ws.sock.settimeout(60)
        seen = set()
        while len(seen) < n:
            m = ws.recv()
            assert m.get("result") == {}, m
            seen.add(m["id"])
        assert seen == set(range(n))
        # duplicate ids in flight over the same connection
        hang = fk.call("POST", "/_fake/deployments", {"siteId": "site_abuse", "knobs": {"hang": True}})
        call = {"jsonrpc": "2.0", "id": "d", "method": "tools/call",
                "params": {"name": "stream_events", "arguments": {"deploymentId": hang["id"]},
                           "_meta": {"progressToken": "t"}}}
        ws.send(call)
        assert ws.recv()["method"] == "notifications/progress"
        ws.send(call)
        while True:
            m = ws.recv()
            if "id" in m:
                break
        assert m["id"] == "d" and m["error"]["code"] == -32600, m
        ws.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "d"}})
        ws.send(PING)
        while True:
            m = ws.recv()
            if "id" in m:
                break
        assert m["id"] == "p", "the cancelled call is never answered"
        deadline = time.monotonic() + 3
        while fk.call("GET", "/_fake/streams")["open"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fk.call("GET", "/_fake/streams")["open"] == 0
        ws.close()
    finally:
        stop(srv)
        fk.close()


@suite.test
def two_hundred_websockets_dropped_abruptly():
    fk = Fake("showly")
    cfg = showly_target(fk)
    srv = Listener(config=cfg)
    try:
        ws_ping_ok(srv)
        base = fds_of(srv.proc.pid)
        hang = fk.call("POST", "/_fake/deployments", {"siteId": "site_abuse", "knobs": {"hang": True}})
        socks = []
        for i in range(200):
            kind = i % 4
            if kind == 0:          # mid-handshake: half an upgrade request
                sk = socket.create_connection((srv.host, srv.port), timeout=10)
                sk.sendall(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
                socks.append(sk)
                continue
            ws = ws_init(srv)
            if kind == 2:          # with a call in flight
                ws.send({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                         "params": {"name": "stream_events",
                                    "arguments": {"deploymentId": hang["id"]}}})
            elif kind == 3:        # half a frame
                ws.sock.sendall(b"\x81\xfe\x10")
            socks.append(ws.sock)
        deadline = time.monotonic() + 10
        while fk.call("GET", "/_fake/streams")["open"] < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fk.call("GET", "/_fake/streams")["open"] == 50
        for sk in socks:
            rst(sk)
        # every dropped connection cancels its calls and frees its socket
        deadline = time.monotonic() + 10
        while fk.call("GET", "/_fake/streams")["open"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fk.call("GET", "/_fake/streams")["open"] == 0, "calls of dropped sockets live on"
        n = settle_fds(srv.proc.pid, base)
        assert n <= base + 2, f"{n} descriptors, {base} before: sockets leak"
        ws_ping_ok(srv)
        http_ping_ok(srv)
    finally:
        stop(srv)
        fk.close()


# ---- Streamable HTTP -------------------------------------------------------------

def raw_post(srv, body, sid=None, length=None, timeout=30):
    """POST /mcp on a raw socket (bodies too big for politeness) → (status, body)."""
    sk = socket.create_connection((srv.host, srv.port), timeout=timeout)
    head = (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAccept: {ACCEPT}\r\n"
            f"Content-Type: application/json\r\nContent-Length: "
            f"{len(body) if length is None else length}\r\n")
    if sid:
        head += f"Mcp-Session-Id: {sid}\r\n"
    try:
        sk.sendall(head.encode() + b"\r\n")
        for i in range(0, len(body), 1 << 16):
            sk.sendall(body[i:i + (1 << 16)])
    except OSError:
        pass   # the server may answer and close before reading it all
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = sk.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status = int(head.split()[1]) if head else 0
        clen = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                clen = int(v)
        while len(rest) < clen:
            chunk = sk.recv(65536)
            if not chunk:
                break
            rest += chunk
    except OSError:
        status, rest = (0, b"") if not buf else (int(buf.split()[1]), b"")
    sk.close()
    return status, rest


@suite.test
def http_oversized_invalid_deep_and_odd_requests():
    srv = Listener()
    try:
        sid = srv.initialize()
        st, _ = raw_post(srv, HUGE, sid)
        assert st == 413, st
        for body in INVALID_UTF8 + [DEEP_ARRAY, DEEP_OBJECT]:
            st, b = raw_post(srv, body, sid)
            assert st == 400 and json.loads(b)["error"]["code"] == -32700, (st, b[:200])
        s = {"Mcp-Session-Id": sid}
        st, _, b = srv.request("POST", [{"jsonrpc": "2.0", "id": 1, "method": "ping"}], s)
        assert json.loads(b)["error"]["code"] == -32600, b
        st, _, b = srv.request("POST", raw=b"[]", headers=s)
        assert json.loads(b)["error"]["code"] == -32600, (st, b)
        st, _, b = srv.request("POST", {"jsonrpc": "2.0", "id": None, "method": "ping"}, s)
        r = json.loads(b)
        assert r["id"] is None and r["error"]["code"] == -32600, (st, b)
        for params in ({"requestId": 12345}, {"requestId": None}, {}):
            st, _, _ = srv.request("POST", {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                            "params": params}, s)
            assert st == 202, st
        st, _, b = srv.request("POST", PING, s)
        assert st == 200 and json.loads(b)["result"] == {}
        ws_ping_ok(srv)
    finally:
        stop(srv)


def raw_exchange(srv, data, timeout=5):
    """Sends raw bytes on a fresh connection; returns whatever comes back
    until the server closes (or the timeout)."""
    sk = socket.create_connection((srv.host, srv.port), timeout=timeout)
    out = b""
    try:
        sk.sendall(data)
        while True:
            chunk = sk.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    finally:
        sk.close()
    return out


@suite.test
def http_malformed_heads_and_websocket_protocol_violations():
    srv = Listener()
    try:
        sid = srv.initialize()
        # heads far over any sane size: dropped or refused, never served
        for data in (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n",
                     b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                     b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n",
                     os.urandom(3000)):
            out = raw_exchange(srv, data)
            assert out == b"" or out.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), out[:100]
        # a Content-Length that is not one decimal number (a sign, letters, a
        # list, two header lines) leaves the body's length unknown: 400 Bad
        # Request, before any body is read; a number over the cap: 413
        for cl, want in ((b"-1", 400), (b"abc", 400), (b"10, 10", 400), (b"2, 3", 400),
                         (b"+2", 400), (b"0x2", 400), (b"2\r\nContent-Length: 3", 400),
                         (b"2\r\nContent-Length: 2", 400), (b"", 411),
                         (b"99999999999999999999999", 413), (b"4194305", 413)):
            out = raw_exchange(srv, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: " +
                               ACCEPT.encode() + b"\r\nContent-Type: application/json\r\n"
                               b"Mcp-Session-Id: " + sid.encode() + b"\r\nContent-Length: " + cl +
                               b"\r\n\r\n{}")
            assert out.startswith(b"HTTP/1.1 %d" % want), (cl, want, out[:100])
            head, _, body = out.partition(b"\r\n\r\n")
            assert b"connection: close" in head.lower(), (cl, head)
            if want == 400:
                assert b"Content-Length" in json.loads(body)["error"]["message"].encode(), body
        # a well-formed one, with spaces around it, is fine
        out = raw_exchange(srv, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: " +
                           ACCEPT.encode() + b"\r\nContent-Type: application/json\r\n"
                           b"Connection: close\r\nMcp-Session-Id: " + sid.encode() +
                           b"\r\nContent-Length:  " + str(len(json.dumps(PING))).encode() +
                           b" \r\n\r\n" + json.dumps(PING).encode())
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b'"result":{}}'), out
        # WebSocket protocol violations: closed with 1002, nobody else affected
        for first, payload in ((0x83, b"x"),          # reserved opcode
                               (0xC1, b"{}"),         # RSV1 without an extension
                               (0x09, b"x"),          # fragmented control frame
                               (0x88, b"\x03\xe7")):  # close code 999
            ws = ws_init(srv)
            # first header byte as given, masked with a zero key
            ws.sock.sendall(bytes([first, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            assert ws.close_code() == 1002, hex(first)
            ws.close()
        ws = ws_init(srv)
        ws.send_frame(0x9, b"p" * 125)   # a ping is answered with a pong
        op, data = ws.recv_frame()
        assert op == 0xA and data == b"p" * 125, (op, data[:10])
        ws.close()
        st, _, b = srv.request("POST", PING, {"Mcp-Session-Id": sid})
        assert st == 200 and json.loads(b)["result"] == {}
        ws_ping_ok(srv)
    finally:
        stop(srv)


@suite.test
def http_duplicate_ids_in_flight_and_cancel_after_finish():
    fk = Fake("showly")
    cfg = showly_target(fk)
    srv = Listener(config=cfg)
    try:
        sid = srv.initialize()
        hang = fk.call("POST", "/_fake/deployments", {"siteId": "site_abuse", "knobs": {"hang": True}})
        call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": "stream_events", "arguments": {"deploymentId": hang["id"]},
                           "_meta": {"progressToken": "h"}}}
        c1, r1 = open_post_stream(srv, sid, call)
        it = sse_events(r1)
        assert next(it)["method"] == "notifications/progress"
        st, h, b = srv.request("POST", call, {"Mcp-Session-Id": sid})
        if h.get("content-type") == "text/event-stream":
            msgs = [json.loads(l[5:]) for l in b.split(b"\n") if l.startswith(b"data:")]
            r = [m for m in msgs if "id" in m][-1]
        else:
            r = json.loads(b)
        assert r["id"] == 5 and r["error"]["code"] == -32600, (st, b)
        assert fk.call("GET", "/_fake/streams")["open"] == 1
        st, _, _ = srv.request("POST", {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                        "params": {"requestId": 5}}, {"Mcp-Session-Id": sid})
        assert st == 202
        assert not any("result" in m or "error" in m for m in it)
        c1.close()
        # cancelling it again (finished now) is harmless
        st, _, _ = srv.request("POST", {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                        "params": {"requestId": 5}}, {"Mcp-Session-Id": sid})
        assert st == 202
        st, _, b = srv.request("POST", PING, {"Mcp-Session-Id": sid})
        assert st == 200 and json.loads(b)["result"] == {}
    finally:
        stop(srv)
        fk.close()


def parse_responses(data):
    """Splits HTTP/1.1 responses with a Content-Length → [(status, headers, body)]."""
    out = []
    rest = data
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, rest[:200]
        lines = head.split(b"\r\n")
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            hdrs[k.strip().lower().decode()] = v.strip().decode()
        clen = int(hdrs["content-length"])
        out.append((int(lines[0].split()[1]), hdrs, rest[:clen]))
        rest = rest[clen:]
    return out


def pipeline(srv, chunks, gap=0.0):
    """Sends chunks on one connection (gap seconds apart), then shuts down the
    sending side; returns everything the server sent until it closed."""
    sk = socket.create_connection((srv.host, srv.port), timeout=30)
    try:
        for i, chunk in enumerate(chunks):
            if i and gap:
                time.sleep(gap)
            sk.sendall(chunk)
        sk.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the server may close early; what it answered is checked
    data = b""
    while True:
        try:
            chunk = sk.recv(1 << 16)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    sk.close()
    return data


def ping_post(srv, sid, rid, extra=""):
    body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": "ping"}).encode()
    return (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAccept: {ACCEPT}\r\n"
            f"Content-Type: application/json\r\nMcp-Session-Id: {sid}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@suite.test
def http_pipelined_requests_on_one_connection():
    """HTTP/1.1 pipelining. Debian's libwebsockets 4.1.6 cannot serve a request
    whose bytes it read together with the one before it (it would hand that
    request's head over as its body), so the server answers the request before
    such bytes with `Connection: close` and closes: by RFC 9112 section 9.6
    none of the later requests were processed, and the client may send them
    again. None is half-processed or answered 400. Requests that arrive apart
    are all answered, in order, on the one kept-alive connection."""
    srv = Listener()
    try:
        sid = srv.initialize()
        # 500 pings in one send: the first is answered, with Connection: close
        n = 500
        data = pipeline(srv, [b"".join(ping_post(srv, sid, i) for i in range(n))])
        answers = parse_responses(data)
        assert len(answers) == 1, [(a[0], a[2][:80]) for a in answers[:3]]
        st, hdrs, body = answers[0]
        assert st == 200 and json.loads(body) == {"jsonrpc": "2.0", "id": 0, "result": {}}, answers
        assert hdrs.get("connection") == "close", hdrs
        # two in one send, the second a request with side effects: it must not run
        data = pipeline(srv, [ping_post(srv, sid, "first") + ping_post(srv, sid, "second")])
        answers = parse_responses(data)
        assert [(a[0], json.loads(a[2])["id"], a[1].get("connection")) for a in answers] == \
            [(200, "first", "close")], answers
        # requests that reach the server apart: every one answered, in order, kept alive
        data = pipeline(srv, [ping_post(srv, sid, i) for i in range(5)], gap=0.1)
        answers = parse_responses(data)
        assert [(a[0], json.loads(a[2])["id"]) for a in answers] == [(200, i) for i in range(5)], answers
        assert all(a[1].get("connection") != "close" for a in answers), answers
        # one request, then the client shuts its sending side at once: still answered
        for _ in range(20):
            answers = parse_responses(pipeline(srv, [ping_post(srv, sid, "solo")]))
            assert [(a[0], json.loads(a[2])["id"]) for a in answers] == [(200, "solo")], answers
        # a client that says Connection: close is told so in the answer
        answers = parse_responses(pipeline(srv, [ping_post(srv, sid, "c", "Connection: close\r\n")]))
        assert [(a[0], a[1].get("connection")) for a in answers] == [(200, "close")], answers
        http_ping_ok(srv)
    finally:
        stop(srv)


@suite.test
def http_request_pipelined_behind_a_streaming_call():
    """A request pipelined behind a POST whose answer is an SSE stream (whose
    head says Connection: close) is not processed either: that stream closes,
    and the call behind it is not cancelled by the pipelined notification."""
    srv = Listener(config=showly_target())
    try:
        sid = srv.initialize()
        hang = hanging_deployment()
        call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": "stream_events", "arguments": {"deploymentId": hang["id"]},
                           "_meta": {"progressToken": "s"}}}
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}

        def post(msg):
            body = json.dumps(msg).encode()
            return (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAccept: {ACCEPT}\r\n"
                    f"Content-Type: application/json\r\nMcp-Session-Id: {sid}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body

        sk = socket.create_connection((srv.host, srv.port), timeout=30)
        sk.sendall(post(call) + post(cancel))
        data = b""
        while True:
            try:
                chunk = sk.recv(1 << 16)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        sk.close()
        head = data.split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 200") and b"text/event-stream" in head, data[:300]
        assert b"connection: close" in head, head
        assert data.count(b"HTTP/1.1") == 1, data[:600]
        # the pipelined cancel was not processed: the upstream stream is still open
        time.sleep(0.3)
        assert not closed_streams(hang["id"]), "the pipelined cancel was not processed"
        st, _, _ = srv.request("POST", cancel, {"Mcp-Session-Id": sid})
        assert st == 202
        assert wait_closed(hang["id"]), "a cancel sent on its own is"
        http_ping_ok(srv)
    finally:
        stop(srv)


@suite.test
def half_open_connections_do_not_block_anyone():
    srv = Listener()
    try:
        sid = srv.initialize()
        base = fds_of(srv.proc.pid)
        half = []
        for data in (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Len",
                     (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {ACCEPT}\r\n"
                      f"Content-Type: application/json\r\nMcp-Session-Id: {sid}\r\n"
                      f"Content-Length: 100\r\n\r\n" + '{"jsonrpc":"2.0",').encode(),
                     b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n",
                     b""):  # connect, send nothing
            for _ in range(5):
                sk = socket.create_connection((srv.host, srv.port), timeout=10)
                if data:
                    sk.sendall(data)
                half.append(sk)
        ws = ws_init(srv)
        ws.sock.sendall(b"\x81\xfe")  # half a frame header on an open WebSocket
        half.append(ws.sock)
        t0 = time.monotonic()
        for _ in range(3):
            st, _, b = srv.request("POST", PING, {"Mcp-Session-Id": sid})
            assert st == 200 and json.loads(b)["result"] == {}
            ws_ping_ok(srv)
        assert time.monotonic() - t0 < 5, "others were kept waiting"
        # close half of them politely, reset the others; the server frees all
        for i, sk in enumerate(half):
            if i % 2:
                rst(sk)
            else:
                sk.close()
        n = settle_fds(srv.proc.pid, base)
        assert n <= base + 2, f"{n} descriptors, {base} before"
        http_ping_ok(srv)
    finally:
        stop(srv)


@suite.test
def two_hundred_http_sessions_abandoned_and_the_session_cap():
    srv = Listener()
    try:
        http_ping_ok(srv)
        base = fds_of(srv.proc.pid)
        sids = [srv.initialize() for _ in range(200)]
        assert len(set(sids)) == 200
        # a few with an open GET stream dropped abruptly
        for sid in sids[:20]:
            sk = socket.create_connection((srv.host, srv.port), timeout=10)
            sk.sendall((f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                        f"Mcp-Session-Id: {sid}\r\n\r\n").encode())
            assert b" 200 " in sk.recv(4096).split(b"\r\n")[0]
            rst(sk)
        n = settle_fds(srv.proc.pid, base)
        assert n <= base + 2, f"{n} descriptors, {base} before"
        # every abandoned session still works
        for sid in (sids[0], sids[99], sids[-1]):
            st, _, b = srv.request("POST", PING, {"Mcp-Session-Id": sid})
            assert st == 200 and json.loads(b)["result"] == {}, (st, b)
        # the live-session cap: 1024; past it initialize is refused clearly
        more = []
        refused = None
        for _ in range(1024 - 200 + 5):
            st, h, b = srv.request("POST", INIT)
            if st != 200:
                refused = (st, b)
                break
            more.append(h["mcp-session-id"])
        assert len(sids) + len(more) == 1024, len(sids) + len(more)
        assert refused and refused[0] == 503 and b"DELETE" in refused[1], refused
        assert srv.request("DELETE", headers={"Mcp-Session-Id": sids[0]})[0] == 200
        assert srv.request("POST", INIT)[0] == 200, "a freed slot is usable again"
        ws_ping_ok(srv)  # WebSocket sessions are not counted against the cap
    finally:
        stop(srv)


if __name__ == "__main__":
    fake = Fake("showly")
    try:
        suite.run()
    finally:
        fake.close()
