#!/usr/bin/env python3
"""Scripted SSE server for test_stream.c (Python 3 stdlib only).

Binds 127.0.0.1 on an ephemeral port, prints "PORT <n>" as its first stdout
line, and serves until its stdin reaches EOF (so it never outlives the test).

GET /s/<id>?key=K&mode=M&ids=0|1&per=N   one connection of a stream

Every stream is the same logical sequence of 8 events (SEQ below); `ids=1`
adds "id: <n>" (1-based position) to each. Modes:
  lei       honours Last-Event-ID: sends the `per` events after it, closes
  replay    ignores Last-Event-ID: connection k sends events 1 .. k*per
  all       the whole sequence in one write, then closes
  hold      the first `per` events, then keep-alive comments until the
            client leaves (at most 20 s)
  notfound  404 with a JSON error body
  flaky     the first connection of K answers 503; later ones act as `all`
  early     the first `per` events, then closes (no terminal event)
  two       an event the test adapter turns into two, then as `all`
  fatal     events 1 and 2, then an event the test adapter deems fatal
GET /stats?key=K   {"connections": n, "open": n, "lastEventIds": [..|null]}
"""
import json
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
STATS = {}

SEQ = [
    ("status", "queued"),
    ("log", "line 2"),
    ("log", "line 3"),
    ("status", "building https://u.example/4"),
    ("ignored", "x"),
    ("log", "line 6"),
    ("log", "line 7"),
    ("done", "end"),
]


def stats(key):
    return STATS.setdefault(key, {"connections": 0, "open": 0, "lastEventIds": []})


def render(events, ids):
    out = []
    for pos, (etype, data) in events:
        if ids:
            out.append("id: %d\n" % pos)
        out.append("event: %s\n" % etype)
        for line in data.split("\n"):
            out.append("data: %s\n" % line)
        out.append("\n")
    return "".join(out).encode()


def numbered(first, last):
    return [(i, SEQ[i - 1]) for i in range(first, min(last, len(SEQ)) + 1)]


def peer_closed(conn, timeout):
    try:
        readable, _, _ = select.select([conn], [], [], timeout)
        if not readable:
            return False
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def plain(self, code, body):
        body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        key = q.get("key", "")
        if url.path == "/stats":
            with LOCK:
                body = json.dumps(stats(key))
            self.plain(200, body)
            return
        if not url.path.startswith("/s/"):
            self.plain(404, "{}")
            return
        mode = q.get("mode", "all")
        ids = q.get("ids", "1") == "1"
        per = int(q.get("per", "2"))
        last = self.headers.get("Last-Event-ID")
        with LOCK:
            st = stats(key)
            st["connections"] += 1
            st["lastEventIds"].append(last)
            conn_no = st["connections"]
            st["open"] += 1
        try:
            if mode == "notfound":
                self.plain(404, '{"error":{"code":"no_such_deployment","message":"gone"}}')
                return
            if mode == "flaky" and conn_no == 1:
                self.plain(503, '{"error":"busy"}')
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            if mode == "lei":
                start = int(last) if last and last.isdigit() else 0
                body = render(numbered(start + 1, start + per), ids)
            elif mode == "replay":
                body = render(numbered(1, conn_no * per), ids)
            elif mode in ("hold", "early"):
                body = render(numbered(1, per), ids)
            elif mode == "fatal":
                body = render(numbered(1, 2) + [(3, ("fatal", "boom"))], ids)
            elif mode == "two":
                body = render([(0, ("two", "a"))] + numbered(1, len(SEQ)), ids)
            else:
                body = render(numbered(1, len(SEQ)), ids)
            self.wfile.write(body)
            self.wfile.flush()
            if mode == "hold":
                end = time.time() + 20
                while time.time() < end:
                    if peer_closed(self.connection, 0.05):
                        break
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
        except OSError:
            pass
        finally:
            with LOCK:
                stats(key)["open"] -= 1
        self.close_connection = True


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()   # EOF: the test process is gone


if __name__ == "__main__":
    main()
