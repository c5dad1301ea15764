"""deploy-mcp --listen: raw Streamable HTTP and WebSocket checks against the real
binary (Python standard library only): status codes, sessions, security
checks, stream routing, cancellation, size caps, idle expiry and shutdown."""

import base64
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from harness import BIN, TOKEN, Fake, Suite

suite = Suite("listener")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
ACCEPT = "application/json, text/event-stream"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}}}


class Listener:
    """deploy-mcp --listen HOST:0, port read from its stderr."""

    def __init__(self, config=None, env=None, args=(), listen="127.0.0.1:0"):
        self.tmp = tempfile.mkdtemp(prefix="dmcp-listen-")
        path = os.path.join(self.tmp, "config.json")
        with open(path, "w") as f:
            json.dump(config or {"targets": {}}, f)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_MCP_")}
        full_env["SHOWLY_TOKEN"] = TOKEN
        full_env.update(env or {})
        self.errpath = os.path.join(self.tmp, "stderr.log")
        self.err = open(self.errpath, "wb")
        self.proc = subprocess.Popen([BIN, "--listen", listen, "--config", path, *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.err, cwd=self.tmp, env=full_env)
        deadline = time.monotonic() + 10
        while True:
            m = re.search(r"listening on http://(\[[^\]]+\]|[0-9.]+):(\d+)/mcp", self.stderr())
            if m:
                self.host, self.port = m.group(1).strip("[]"), int(m.group(2))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"listener did not start: {self.stderr()}")
            time.sleep(0.02)

    def stderr(self):
        self.err.flush()
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")

    def conn(self, timeout=10):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, body=None, headers=None, raw=None):
        """One request on a fresh connection → (status, headers dict, body bytes)."""
        c = self.conn()
        h = {"Accept": ACCEPT, "Content-Type": "application/json"}
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, "/mcp", body=data, headers=h)
        r = c.getresponse()
        out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        c.close()
        return out

    def initialize(self, headers=None):
        st, h, b = self.request("POST", INIT, headers)
        assert st == 200, (st, b)
        assert json.loads(b)["result"]["protocolVersion"] == "2025-11-25"
        sid = h["mcp-session-id"]
        st, _, _ = self.request("POST", {"jsonrpc": "2.0", "method": "notifications/initialized"},
                                {"Mcp-Session-Id": sid, **(headers or {})})
        assert st == 202, st
        return sid

    def stop(self, timeout=5):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("listener did not exit within 5 s of SIGTERM")
        if not self.err.closed:
            self.err.close()
        rc = self.proc.returncode
        with open(self.errpath, "rb") as f:
            err = f.read().decode(errors="replace")
        if rc != 0 or any(m in err for m in SANITIZER_MARKERS):
            # the report (a sanitizer's, a crash's) must not get lost
            print(f"deploy-mcp --listen exited with {rc}; stderr tail:\n{err[-8000:]}", flush=True)
        return rc

    def clean_exit(self, timeout=5):
        """stop(), then: exit status 0 and no sanitizer report on stderr."""
        rc = self.stop(timeout)
        with open(self.errpath, "rb") as f:
            err = f.read().decode(errors="replace")
        assert rc == 0, f"exit status {rc}"
        for m in SANITIZER_MARKERS:
            assert m not in err, err[-6000:]


def sse_events(resp):
    """Yields each SSE event's data (parsed JSON) from an http.client response."""
    data = []
    while True:
        line = resp.fp.readline()
        if not line:
            return
        line = line.rstrip(b"\r\n")
        if not line:
            if data:
                yield json.loads(b"\n".join(data))
            data = []
        elif line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))


def open_post_stream(srv, sid, body):
    c = srv.conn(timeout=30)
    c.request("POST", "/mcp", body=json.dumps(body),
              headers={"Accept": ACCEPT, "Content-Type": "application/json", "Mcp-Session-Id": sid})
    r = c.getresponse()
    return c, r


def showly_config(fake):
    return {"targets": {"web": {"provider": "showly", "siteId": "site_ls", "tokenEnv": "SHOWLY_TOKEN",
                                "baseUrl": fake.url}}}


def wait_closed(fake, dep_id, t0, within=2.0):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        s = fake.call("GET", "/_fake/streams")
        for rec in s["closed"]:
            if rec["deploymentId"] == dep_id:
                assert rec["reason"] == "client_closed", rec
                assert rec["closedAt"] - t0 < within, (rec["closedAt"] - t0)
                return rec
        time.sleep(0.05)
    raise AssertionError("the fake never saw the upstream stream close")


# ---- minimal WebSocket client (RFC 6455) --------------------------------------

class WS:
    def __init__(self, srv, protocol="mcp", headers=None, path="/mcp"):
        self.sock = socket.create_connection((srv.host, srv.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{srv.port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            buf += chunk
        head, _, self.rest = buf.partition(b"\r\n\r\n")
        self.head = head.decode(errors="replace")
        self.status = int(self.head.split()[1]) if self.head else 0

    def send_frame(self, opcode, payload, fin=True):
        hdr = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 65536 else \
            (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        self.sock.sendall(hdr + mask + body)

    def send(self, msg):
        self.send_frame(0x1, json.dumps(msg).encode())

    def _read(self, n):
        while len(self.rest) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.rest += chunk
        out, self.rest = self.rest[:n], self.rest[n:]
        return out

    def recv_frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def recv(self):
        while True:
            op, data = self.recv_frame()
            if op == 0x1:
                return json.loads(data)
            if op == 0x8:
                raise EOFError(f"closed {struct.unpack('!H', data[:2])[0] if data else None}")

    def close_code(self):
        while True:
            op, data = self.recv_frame()
            if op == 0x8:
                return struct.unpack("!H", data[:2])[0]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- tests ---------------------------------------------------------------------

@suite.test
def http_session_lifecycle():
    srv = Listener()
    try:
        sid = srv.initialize()
        assert re.fullmatch(r"[0-9a-f]{32}", sid), sid
        assert srv.initialize() != sid, "each initialize gets its own session"
        st, h, b = srv.request("POST", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                               {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
        assert st == 200 and h["content-type"] == "application/json", (st, h)
        assert int(h["content-length"]) == len(b)
        assert any(t["name"] == "stream_events" for t in json.loads(b)["result"]["tools"])
        st, _, b = srv.request("POST", {"jsonrpc": "2.0", "id": 3, "method": "ping"})
        assert st == 400, (st, b)  # no Mcp-Session-Id after initialize
        st, _, _ = srv.request("POST", {"jsonrpc": "2.0", "id": 3, "method": "ping"},
                               {"Mcp-Session-Id": "0" * 32})
        assert st == 404
        st, _, _ = srv.request("DELETE", headers={"Mcp-Session-Id": sid})
        assert st == 200
        st, _, _ = srv.request("POST", {"jsonrpc": "2.0", "id": 4, "method": "ping"},
                               {"Mcp-Session-Id": sid})
        assert st == 404, "a deleted session is gone"
        st, _, _ = srv.request("DELETE", headers={"Mcp-Session-Id": sid})
        assert st == 404
        # A failed initialize creates no session.
        st, h, b = srv.request("POST", {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
        assert st == 200 and "error" in json.loads(b) and "mcp-session-id" not in h, (st, h, b)
        assert srv.stop() == 0
    finally:
        srv.stop()


@suite.test
def http_request_validation():
    srv = Listener()
    try:
        sid = srv.initialize()
        ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
        s = {"Mcp-Session-Id": sid}
        assert srv.request("POST", ping, {**s, "Accept": "application/json"})[0] == 406
        assert srv.request("POST", ping, {**s, "Accept": "text/event-stream"})[0] == 406
        assert srv.request("POST", ping, {**s, "Content-Type": "text/plain"})[0] == 415
        assert srv.request("POST", ping, {**s, "MCP-Protocol-Version": "1999-01-01"})[0] == 400
        for v in ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"):
            assert srv.request("POST", ping, {**s, "MCP-Protocol-Version": v})[0] == 200, v
        assert srv.request("PUT", ping, s)[0] == 405
        st, _, b = srv.request("POST", raw=b"{not json", headers=s)
        assert st == 400 and json.loads(b)["error"]["code"] == -32700
        st, _, _ = srv.request("POST", {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}, s)
        assert st == 202
        # Chunked request bodies are not decoded: 411.
        c = srv.conn()
        c.putrequest("POST", "/mcp")
        for k, v in (("Accept", ACCEPT), ("Content-Type", "application/json"),
                     ("Mcp-Session-Id", sid), ("Transfer-Encoding", "chunked")):
            c.putheader(k, v)
        c.endheaders()
        body = json.dumps(ping).encode()
        c.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        assert c.getresponse().status == 411
        c.close()
        # Over the 4 MiB body cap: 413, answered from the headers alone.
        c = srv.conn()
        c.putrequest("POST", "/mcp")
        for k, v in (("Accept", ACCEPT), ("Content-Type", "application/json"),
                     ("Mcp-Session-Id", sid), ("Content-Length", str(5 << 20))):
            c.putheader(k, v)
        c.endheaders()
        assert c.getresponse().status == 413
        c.close()
        assert srv.request("GET", headers={**s, "Accept": "application/json"})[0] == 406
        # Other paths are not served.
        c = srv.conn()
        c.request("GET", "/other")
        assert c.getresponse().status == 404
        c.close()
        assert srv.request("POST", ping, s)[0] == 200, "still serving"
    finally:
        assert srv.stop() == 0


@suite.test
def batches_for_older_protocol_versions():
    srv = Listener()
    try:
        init = json.loads(json.dumps(INIT))
        init["params"]["protocolVersion"] = "2025-03-26"
        st, h, _ = srv.request("POST", init)
        sid = h["mcp-session-id"]
        s = {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-03-26"}
        st, h, b = srv.request("POST", [{"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                        {"jsonrpc": "2.0", "method": "notifications/initialized"},
                                        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}], s)
        assert st == 200 and h["content-type"] == "application/json", (st, h)
        assert sorted(m["id"] for m in json.loads(b)) == [1, 2]
        sid2 = srv.initialize()
        st, _, b = srv.request("POST", [{"jsonrpc": "2.0", "id": 1, "method": "ping"}],
                               {"Mcp-Session-Id": sid2})
        assert st == 200 and json.loads(b)["error"]["code"] == -32600, b
    finally:
        assert srv.stop() == 0


@suite.test
def host_and_origin_checks():
    srv = Listener(config={"targets": {}, "allowedOrigins": ["https://app.example.com"]})
    try:
        assert srv.request("POST", INIT, {"Host": "evil.example.com"})[0] == 403
        assert srv.request("POST", INIT, {"Host": f"evil.example.com:{srv.port}"})[0] == 403
        assert srv.request("POST", INIT, {"Origin": "http://evil.example.com"})[0] == 403
        assert srv.request("POST", INIT, {"Origin": "null"})[0] == 403
        for host in (f"localhost:{srv.port}", f"127.0.0.1:{srv.port}", f"[::1]:{srv.port}", "localhost"):
            assert srv.request("POST", INIT, {"Host": host})[0] == 200, host
        for origin in ("http://localhost:5173", "https://127.0.0.1", "http://[::1]:8080",
                       "https://app.example.com"):
            assert srv.request("POST", INIT, {"Origin": origin})[0] == 200, origin
        ws = WS(srv, headers={"Origin": "http://evil.example.com"})
        assert ws.status == 403, ws.head
        ws.close()
    finally:
        assert srv.stop() == 0


@suite.test
def bearer_token_required_everywhere():
    secret = "tok_listener_0123456789abcdef"
    srv = Listener(env={"DEPLOY_MCP_AUTH_TOKEN": secret})
    try:
        auth = {"Authorization": f"Bearer {secret}"}
        st, h, _ = srv.request("POST", INIT)
        assert st == 401 and h.get("www-authenticate", "").startswith("Bearer"), (st, h)
        assert srv.request("POST", INIT, {"Authorization": f"Bearer {secret}x"})[0] == 401
        assert srv.request("POST", INIT, {"Authorization": f"Bearer {secret[:-1]}"})[0] == 401
        assert srv.request("POST", INIT, {"Authorization": secret})[0] == 401
        sid = srv.initialize(auth)
        assert srv.request("DELETE", headers={"Mcp-Session-Id": sid})[0] == 401
        assert srv.request("GET", headers={"Mcp-Session-Id": sid})[0] == 401
        assert srv.request("POST", INIT, {"Authorization": f"bearer {secret}"})[0] == 200
        ws = WS(srv)
        assert ws.status == 401, ws.head
        ws.close()
        ws = WS(srv, headers=auth)
        assert ws.status == 101, ws.head
        ws.send(INIT)
        assert ws.recv()["result"]["serverInfo"]["name"] == "deploy-mcp"
        ws.close()
        assert secret not in srv.stderr()
    finally:
        assert srv.stop() == 0


@suite.test
def bind_addresses():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_MCP_")}
    r = subprocess.run([BIN, "--listen", "0.0.0.0:0"], capture_output=True, text=True, timeout=10,
                       env=env)
    assert r.returncode != 0 and "DEPLOY_MCP_AUTH_TOKEN" in r.stderr and "loopback" in r.stderr, r
    for bad in ("8080", "127.0.0.1:99999", "[::1:80", "example.com:80"):
        r = subprocess.run([BIN, "--listen", bad], capture_output=True, text=True, timeout=10, env=env)
        assert r.returncode == 2 and "--listen" in r.stderr, (bad, r)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    r = subprocess.run([BIN, "--listen", f"127.0.0.1:{busy.getsockname()[1]}"], capture_output=True,
                       text=True, timeout=10, env=env)
    busy.close()
    assert r.returncode == 1 and "in use" in r.stderr, r
    srv = Listener(listen=":0")
    assert srv.host == "127.0.0.1"
    srv.initialize()
    assert srv.stop() == 0
    if socket.has_ipv6:
        try:
            srv = Listener(listen="[::1]:0")
        except AssertionError as e:
            print(f"  (no IPv6 loopback here: {e})")
        else:
            assert srv.host == "::1"
            srv.initialize({"Host": f"[::1]:{srv.port}"})
            assert srv.stop() == 0
    srv = Listener(listen="0.0.0.0:0", env={"DEPLOY_MCP_AUTH_TOKEN": "t0k"})
    srv.host = "127.0.0.1"
    assert srv.request("POST", INIT)[0] == 401
    assert srv.request("POST", INIT, {"Authorization": "Bearer t0k", "Host": "any.example"})[0] == 200
    assert srv.stop() == 0


@suite.test
def sse_stream_routes_progress_and_cancel_on_another_post():
    fake = Fake("showly")
    srv = Listener(config=showly_config(fake))
    try:
        sid = srv.initialize()
        done = fake.call("POST", "/_fake/deployments", {"siteId": "site_ls"})
        hang = fake.call("POST", "/_fake/deployments", {"siteId": "site_ls", "knobs": {"hang": True}})
        # Two calls on two streams of one session; each stream gets only its own messages.
        c1, r1 = open_post_stream(srv, sid, {"jsonrpc": "2.0", "id": "a", "method": "tools/call",
                                             "params": {"name": "stream_events", "arguments": {"deploymentId": hang["id"]},
                                                        "_meta": {"progressToken": "ta"}}})
        c2, r2 = open_post_stream(srv, sid, {"jsonrpc": "2.0", "id": "b", "method": "tools/call",
                                             "params": {"name": "stream_events", "arguments": {"deploymentId": done["id"]},
                                                        "_meta": {"progressToken": "tb"}}})
        assert r1.status == 200 and r1.getheader("content-type") == "text/event-stream"
        assert r2.status == 200 and r2.getheader("content-type") == "text/event-stream"
        events = list(sse_events(r2))  # ends when the server closes the stream after the result
        assert events[-1]["id"] == "b" and events[-1]["result"]["structuredContent"]["status"] == "ready"
        notes = events[:-1]
        assert any(n["method"] == "notifications/progress" for n in notes)
        assert any(n["method"] == "notifications/message" for n in notes)
        assert all(n.get("params", {}).get("progressToken", "tb") == "tb" for n in notes), notes
        # The hanging call: first progress arrives, then cancel it from a different POST.
        it = sse_events(r1)
        first = next(it)
        assert first["method"] == "notifications/progress" and first["params"]["progressToken"] == "ta"
        t0 = time.time()
        st, _, _ = srv.request("POST", {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                        "params": {"requestId": "a", "reason": "test"}},
                               {"Mcp-Session-Id": sid})
        assert st == 202
        rest = list(it)  # the stream ends without a response
        assert not any("result" in m or "error" in m for m in rest), rest
        wait_closed(fake, hang["id"], t0)
        c1.close()
        c2.close()
    finally:
        assert srv.stop() == 0
        fake.close()


@suite.test
def withdrawn_server_request_reaches_the_get_stream():
    """A tools/call waiting on the client (elicitation/create), then cancelled
    by the client: the server withdraws its own request with
    notifications/cancelled. Its call's stream is gone by then, so it must
    arrive on the GET stream, not vanish into the cancel POST's empty 202."""
    srv = Listener(args=("--conformance-fixtures",))
    try:
        init = json.loads(json.dumps(INIT))
        init["params"]["capabilities"] = {"elicitation": {}}
        st, h, b = srv.request("POST", init)
        assert st == 200, (st, b)
        sid = h["mcp-session-id"]
        st, _, _ = srv.request("POST", {"jsonrpc": "2.0", "method": "notifications/initialized"},
                               {"Mcp-Session-Id": sid})
        assert st == 202
        g = srv.conn(timeout=10)
        g.request("GET", "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": sid})
        gr = g.getresponse()
        assert gr.status == 200
        c, r = open_post_stream(srv, sid, {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                           "params": {"name": "test_elicitation",
                                                      "arguments": {"message": "who?"}}})
        it = sse_events(r)
        ask = next(it)
        assert ask["method"] == "elicitation/create" and isinstance(ask["id"], str), ask
        st, _, _ = srv.request("POST", {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                        "params": {"requestId": 5}}, {"Mcp-Session-Id": sid})
        assert st == 202
        assert not any("result" in m or "error" in m for m in it)
        ev = next(sse_events(gr))
        assert ev["method"] == "notifications/cancelled", ev
        assert ev["params"]["requestId"] == ask["id"], (ev, ask)
        c.close()
        g.close()
    finally:
        assert srv.stop() == 0


@suite.test
def get_stream_and_delete_ends_open_streams():
    fake = Fake("showly")
    srv = Listener(config=showly_config(fake))
    try:
        sid = srv.initialize()
        c = srv.conn(timeout=10)
        c.request("GET", "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": sid})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("content-type") == "text/event-stream"
        assert r.getheader("mcp-session-id") == sid
        assert srv.request("GET", headers={"Accept": "text/event-stream", "Mcp-Session-Id": sid})[0] == 409
        assert srv.request("GET", headers={"Accept": "text/event-stream"})[0] == 400
        # DELETE ends the session: its GET stream and a running call's stream close,
        # and the call's upstream transfer is cancelled.
        hang = fake.call("POST", "/_fake/deployments", {"siteId": "site_ls", "knobs": {"hang": True}})
        c2, r2 = open_post_stream(srv, sid, {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                             "params": {"name": "stream_events", "arguments": {"deploymentId": hang["id"]},
                                                        "_meta": {"progressToken": 1}}})
        it = sse_events(r2)
        next(it)
        t0 = time.time()
        assert srv.request("DELETE", headers={"Mcp-Session-Id": sid})[0] == 200
        assert list(sse_events(r)) == []
        assert not any("result" in m for m in it)
        wait_closed(fake, hang["id"], t0)
        c.close()
        c2.close()
    finally:
        assert srv.stop() == 0
        fake.close()


def rst(sock):
    """Closes a socket with a TCP reset (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def raw_request(port, method, sid, body=None):
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nMcp-Session-Id: {sid}\r\n"
    if body is not None:
        head += (f"Accept: {ACCEPT}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n")
    return (head + "\r\n").encode() + data


def status_of(sock):
    buf = b""
    while b"\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return int(buf.split()[1]) if buf else 0


@suite.test
def session_ended_while_its_cancelled_stream_closes():
    """Regression (heap-use-after-free, found by ASan in the SDK interop test):
    a POST stream that has ended -- its call cancelled by notifications/cancelled
    on another POST, or its response queued -- stays open until it has flushed
    and closed; a DELETE (or idle expiry, or shutdown) in that window freed the
    session while the stream still pointed at it. Here the cancel and the DELETE
    arrive together, and every other round the stream's client resets its
    connection too. The server must keep serving and exit 0 with no sanitizer
    report (ctest runs this against the ASan build too)."""
    fake = Fake("showly")
    srv = Listener(config=showly_config(fake))
    try:
        for i in range(24):
            sid = srv.initialize()
            dep = fake.call("POST", "/_fake/deployments", {"siteId": "site_ls",
                                                          "knobs": {"hang": True, "keepalive_ms": 50}})
            call = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                    "params": {"name": "stream_events", "arguments": {"deploymentId": dep["id"]},
                               "_meta": {"progressToken": i}}}
            a = socket.create_connection((srv.host, srv.port), timeout=10)
            a.sendall(raw_request(srv.port, "POST", sid, call))
            buf = b""
            while b"notifications/progress" not in buf:
                chunk = a.recv(65536)
                assert chunk, f"stream closed before its first progress: {buf[:300]}"
                buf += chunk
            b = socket.create_connection((srv.host, srv.port), timeout=10)
            c = socket.create_connection((srv.host, srv.port), timeout=10)
            b.sendall(raw_request(srv.port, "POST", sid, {
                "jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": i}}))
            c.sendall(raw_request(srv.port, "DELETE", sid))
            if i % 2:
                rst(a)
            assert status_of(b) in (202, 404), "the cancel is accepted (or the session is gone)"
            assert status_of(c) == 200, "the DELETE ends the session"
            if i % 2 == 0:
                a.settimeout(10)
                rest = buf
                while True:
                    chunk = a.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
                assert b'"result"' not in rest, "a cancelled call sends no result"
                a.close()
            for x in (b, c):
                x.close()
            assert srv.proc.poll() is None, f"the server died in round {i}"
        # still serving, and nothing leaked into other sessions
        sid = srv.initialize()
        st, _, body = srv.request("POST", {"jsonrpc": "2.0", "id": "p", "method": "ping"},
                                  {"Mcp-Session-Id": sid})
        assert st == 200 and json.loads(body)["result"] == {}
    finally:
        srv.clean_exit(timeout=30)
        fake.close()


@suite.test
def websocket_messages_and_frame_rules():
    srv = Listener()
    try:
        ws = WS(srv)
        assert ws.status == 101, ws.head
        assert re.search(r"(?im)^sec-websocket-protocol:\s*mcp\s*$", ws.head), ws.head
        ws.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert ws.recv() == {"jsonrpc": "2.0", "id": 1, "result": {}}
        ws.send(INIT)
        assert ws.recv()["result"]["protocolVersion"] == "2025-11-25"
        ws.send_frame(0x1, b"not json")
        assert ws.recv()["error"]["code"] == -32700
        # A message split over fragments is reassembled.
        msg = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).encode()
        ws.send_frame(0x1, msg[:10], fin=False)
        ws.send_frame(0x0, msg[10:20], fin=False)
        ws.send_frame(0x0, msg[20:], fin=True)
        assert any(t["name"] == "list_targets" for t in ws.recv()["result"]["tools"])
        ws.send_frame(0x2, b"\x00\x01")
        assert ws.close_code() == 1003
        ws.close()
        # Over the 4 MiB cap (in fragments): 1009.
        ws = WS(srv)
        chunk = b" " * (1 << 20)
        ws.send_frame(0x1, b"[" + chunk, fin=False)
        try:
            for _ in range(5):
                ws.send_frame(0x0, chunk, fin=False)
        except OSError:
            pass
        assert ws.close_code() == 1009
        ws.close()
        # Upgrades elsewhere than /mcp, or for another subprotocol, are refused.
        ws = WS(srv, path="/other")
        assert ws.status == 404, ws.head
        ws.close()
        ws = WS(srv, protocol="graphql-ws")
        assert ws.status != 101, ws.head
        ws.close()
        ws = WS(srv)
        ws.send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
        assert ws.recv()["id"] == 3, "server still serving"
        ws.close()
    finally:
        assert srv.stop() == 0


@suite.test
def websocket_close_cancels_the_sessions_calls():
    fake = Fake("showly")
    srv = Listener(config=showly_config(fake))
    try:
        hang = fake.call("POST", "/_fake/deployments", {"siteId": "site_ls", "knobs": {"hang": True}})
        ws = WS(srv)
        ws.send(INIT)
        ws.recv()
        ws.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        ws.send({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                 "params": {"name": "stream_events", "arguments": {"deploymentId": hang["id"]},
                            "_meta": {"progressToken": "w"}}})
        note = ws.recv()
        assert note["method"] == "notifications/progress", note
        t0 = time.time()
        ws.close()
        wait_closed(fake, hang["id"], t0)
    finally:
        assert srv.stop() == 0
        fake.close()


@suite.test
def idle_sessions_expire():
    srv = Listener(env={"DEPLOY_MCP_SESSION_IDLE_SECONDS": "1"})
    try:
        sid = srv.initialize()
        keep = srv.initialize()
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            st, _, _ = srv.request("POST", {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                   {"Mcp-Session-Id": keep})
            assert st == 200, "a session in use does not expire"
            time.sleep(0.3)
        st, _, _ = srv.request("POST", {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                               {"Mcp-Session-Id": sid})
        assert st == 404, "an idle session expired"
    finally:
        assert srv.stop() == 0


@suite.test
def sigterm_with_open_streams_exits_cleanly():
    fake = Fake("showly")
    srv = Listener(config=showly_config(fake))
    try:
        hang = fake.call("POST", "/_fake/deployments", {"siteId": "site_ls", "knobs": {"hang": True}})
        sid = srv.initialize()
        c, r = open_post_stream(srv, sid, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                           "params": {"name": "stream_events", "arguments": {"deploymentId": hang["id"]},
                                                      "_meta": {"progressToken": 1}}})
        next(sse_events(r))
        g = srv.conn()
        g.request("GET", "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": sid})
        assert g.getresponse().status == 200
        ws = WS(srv)
        ws.send(INIT)
        ws.recv()
        t0 = time.monotonic()
        assert srv.stop() == 0
        assert time.monotonic() - t0 < 3, "exits promptly"
        wait_closed(fake, hang["id"], time.time() - (time.monotonic() - t0), within=5)
        for x in (c, g, ws):
            x.close()
    finally:
        srv.stop()
        fake.close()


if __name__ == "__main__":
    suite.run()
