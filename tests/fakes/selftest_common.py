"""Harness shared by the fakes' self-tests (selftest_<provider>.py; stdlib only).

Not a test itself (tests/CMakeLists.txt leaves it out of the self-tests): it
starts a fake and reads its `PORT <n>` line, talks HTTP and raw SSE to it,
counts passed and failed checks, and checks the command-line contract every
fake shares (exit 0 on SIGTERM and on stdin EOF).
"""

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PASSED, FAILED = [], []


def start(fake, *args):
    """Starts tests/fakes/<fake>_fake.py --port 0 *args with stdin and stdout
    piped; returns (process, port)."""
    p = subprocess.Popen([sys.executable, os.path.join(HERE, fake + "_fake.py"), "--port", "0",
                          *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    line = p.stdout.readline().decode()
    assert line.startswith("PORT "), line
    return p, int(line.split()[1])


def stop(proc):
    """Closes the fake's stdin and waits, killing it after 5 s. (The fakes run
    with --exit-on-stdin-eof, so they also end when a self-test dies.)"""
    proc.stdin.close()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


def check(name, fn=None):
    """Runs fn now and counts it passed or failed (printing the traceback);
    without fn, a decorator that does so: @check("name") def _(): ..."""
    if fn is None:
        return lambda f: check(name, f)
    t = time.monotonic()
    try:
        fn()
        PASSED.append(name)
        print("ok   %-42s %.2fs" % (name, time.monotonic() - t), flush=True)
    except Exception as e:  # noqa: BLE001
        FAILED.append(name)
        print("FAIL %-42s %r" % (name, e), flush=True)
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
    return fn


def check_exits(proc, start_again):
    """The command-line contract every fake keeps: SIGTERM ends `proc` with
    status 0, and so does closing the stdin of a fake that start_again()
    starts with --exit-on-stdin-eof."""
    def t_sigterm():
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=3) == 0

    def t_stdin_eof():
        p2, _ = start_again()
        p2.stdin.close()
        try:
            assert p2.wait(timeout=3) == 0
        finally:
            if p2.poll() is None:
                p2.kill()
            p2.stdout.close()

    check("SIGTERM exits 0", t_sigterm)
    check("stdin EOF exits 0", t_stdin_eof)


def finish(proc, start_again):
    """Ends a self-test: check_exits, stop, then prints "N passed, N failed"
    and returns the exit status."""
    check_exits(proc, start_again)
    stop(proc)
    print("%d passed, %d failed" % (len(PASSED), len(FAILED)), flush=True)
    return 1 if FAILED else 0


class Client:
    """HTTP to a fake on 127.0.0.1, one connection per request. Requests carry
    the client's token (auth_headers) unless told token=None; the control
    API (ctl) goes without."""

    DEFAULT = object()

    def __init__(self, port, token=None):
        self.port, self.token = port, token

    def auth_headers(self, token):
        return {"Authorization": "Bearer " + token}

    def call(self, method, path, body=None, headers=None, token=DEFAULT, raw=None):
        """body: bytes as they are, anything else as JSON (Content-Type
        application/json unless headers give one); raw: bytes without a
        Content-Type. Returns (status, lowercased headers, the body as JSON,
        else as text, None when empty)."""
        h = dict(headers or {})
        token = self.token if token is self.DEFAULT else token
        if token is not None:
            h.update(self.auth_headers(token))
        data = raw
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        out = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        try:
            js = json.loads(out) if out else None
        except ValueError:
            js = out.decode(errors="replace")
        return r.status, hdrs, js

    req = call

    def ctl(self, method, path, body=None):
        """The control API (/_fake + path): asserts a 2xx, returns the JSON."""
        st, _, js = self.call(method, "/_fake" + path, body, token=None)
        assert 200 <= st < 300, (st, js)
        return js

    def sse_open(self, path, headers=None, timeout=10):
        """GET `path` by hand as an event stream (Accept: text/event-stream and
        the token, then `headers`); reads the response head only. Returns
        (socket, head text, body bytes received so far)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        h = {"Host": "127.0.0.1"}
        if self.token is not None:
            h.update(self.auth_headers(self.token))
        h["Accept"] = "text/event-stream"
        h.update(headers or {})
        s.sendall(("GET %s HTTP/1.1\r\n" % path
                   + "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                break
            buf += d
        head, _, body = buf.partition(b"\r\n\r\n")
        return s, head.decode(), body

    def sse_read(self, path, headers=None, timeout=10):
        """Like sse_open, then reads until the server closes the connection or
        `timeout` s have passed. Returns (status or None, head text, body
        bytes, whether the server closed)."""
        deadline = time.monotonic() + timeout
        s, head, body = self.sse_open(path, headers, timeout)
        s.settimeout(0.2)
        closed = False
        while time.monotonic() < deadline:
            try:
                d = s.recv(1 << 20)
            except socket.timeout:
                continue
            if not d:
                closed = True
                break
            body += d
        s.close()
        status = int(head.split(" ")[1]) if head.startswith("HTTP/") else None
        return status, head, body, closed


def parse_sse(body):
    """Minimal WHATWG event-stream parser (any line ending): (events
    [{event, id, data (its data: lines joined by "\\n")}], number of comment
    lines)."""
    text = body.decode("utf-8", "surrogateescape")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    events, comments = [], 0
    cur = {"event": "message", "data": [], "id": None}
    for ln in lines:
        if ln == "":
            if cur["data"]:
                events.append({"event": cur["event"], "id": cur["id"],
                               "data": "\n".join(cur["data"])})
            cur = {"event": "message", "data": [], "id": None}
            continue
        if ln.startswith(":"):
            comments += 1
            continue
        f, _, v = ln.partition(":")
        v = v[1:] if v.startswith(" ") else v
        if f == "data":
            cur["data"].append(v)
        elif f in ("event", "id"):
            cur[f] = v
    return events, comments


def make_zip(files, compression=zipfile.ZIP_STORED):
    """A zip archive of {name: text}."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()
