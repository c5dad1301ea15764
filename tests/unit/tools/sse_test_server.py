#!/usr/bin/env python3
"""Scripted SSE server for test_tools_flow.c (Python 3 stdlib only).

Binds 127.0.0.1 on an ephemeral port, prints "PORT <n>" as its first stdout
line, and serves until its stdin reaches EOF (so it never outlives the test).

GET /events/<scenario>?key=K  text/event-stream; every event's data is JSON
                              for the fake adapter in test_tools_flow.c:
  build   queued, 3 log lines (info, warn, none), building, 2 lines (debug,
          info), ready with a url; then the stream closes
  pct     queued, step 10/100, step 10/100 again, step 50/100, ready 100/100
  burst   200 events of 100 log lines ("L0" .. "L19999"), then ready
  slow    building, then only keep-alive comments until the client leaves
  logs    runtime log lines of every level, then keep-alives
  fail    building, then an in-stream error the adapter treats as fatal
  donly   2 log lines, then "done" (end without a status)
GET /stats?key=K              {"open": streams open now, "total": streams seen}
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
OPEN = {}
TOTAL = {}
HOLD_SECONDS = 30


def ev(obj):
    return ("data: " + json.dumps(obj) + "\n\n").encode()


def lines(*items):
    return {"kind": "log", "lines": [dict(t) for t in items]}


SCENARIOS = {
    "build": [
        {"kind": "status", "status": "queued"},
        lines({"text": "line 1", "level": "info"}, {"text": "warn 1", "level": "warn"},
              {"text": "line 2"}),
        {"kind": "status", "status": "building"},
        lines({"text": "debug x", "level": "debug"}, {"text": "line 3", "level": "info"}),
        {"kind": "status", "status": "ready", "url": "https://p.example"},
    ],
    "pct": [
        {"kind": "status", "status": "queued"},
        {"kind": "step", "step": "downloading", "progress": 10, "total": 100},
        {"kind": "step", "step": "downloading", "progress": 10, "total": 100},
        {"kind": "step", "step": "processing", "progress": 50, "total": 100},
        {"kind": "status", "status": "ready", "progress": 100, "total": 100,
         "url": "https://p.example"},
    ],
    "burst": [lines(*({"text": "L%d" % (e * 100 + i)} for i in range(100))) for e in range(200)]
    + [{"kind": "status", "status": "ready"}],
    "fail": [
        {"kind": "status", "status": "building"},
        {"kind": "error", "code": "bundle_failed", "message": "bundle extraction failed"},
    ],
    "donly": [lines({"text": "a"}, {"text": "b"}), {"kind": "done"}],
    "slow": [{"kind": "status", "status": "building"}],
    "logs": [
        lines({"text": "GET / 200", "level": "info", "ts": "2025-01-01T00:00:00Z",
               "source": "request"},
              {"text": "debug GET noise", "level": "debug"},
              {"text": "GET /x 500", "level": "error"},
              {"text": "warn GET slow", "level": "warn"},
              {"text": "unrelated", "level": "error"}),
    ],
}
HOLD = {"slow", "logs"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        key = query.get("key", "")
        if url.path == "/stats":
            with LOCK:
                body = json.dumps({"open": OPEN.get(key, 0), "total": TOTAL.get(key, 0)})
            body = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        name = url.path.rsplit("/", 1)[-1]
        if not url.path.startswith("/events/") or name not in SCENARIOS:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with LOCK:
            OPEN[key] = OPEN.get(key, 0) + 1
            TOTAL[key] = TOTAL.get(key, 0) + 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for obj in SCENARIOS[name]:
                self.wfile.write(ev(obj))
            self.wfile.flush()
            if name in HOLD:
                end = time.time() + HOLD_SECONDS
                while time.time() < end:
                    time.sleep(0.05)
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
        except OSError:
            pass
        finally:
            with LOCK:
                OPEN[key] -= 1
        self.close_connection = True


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()   # EOF: the test process is gone


if __name__ == "__main__":
    main()
