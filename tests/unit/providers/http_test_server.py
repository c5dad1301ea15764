#!/usr/bin/env python3
"""Scripted HTTP/1.1 server for test_http.c (Python 3 stdlib only).

Binds 127.0.0.1 on an ephemeral port, prints "PORT <n>" as its first stdout
line, and serves until killed or until its stdin reaches EOF (so it never
outlives the test process).

Endpoints (query parameter `key` separates the counters of different tests):
  /json                     200 JSON body, X-Test and X-Padded headers
  /echo                     method, path, query, headers, body as JSON
  /hits?key=K               how many requests the counted endpoints saw for K
  /status/503-then-200?key  first request 503 "busy", then 200
  /429-retry-after?key      first request 429 + Retry-After: 1, then 200
  /429-reset-ms?key         first request 429 + X-Rate-Limit-Time-Reset-Ms: 300
  /429-no-header?key        always 429, no hint when to retry
  /big?size=N               N bytes of 'x'
  /reset?key                reads the request, then resets the connection
  /never?key                accepts the request and never answers
  /slow-stream?n&delay&key  chunked text/event-stream: n chunks "chunk <i>\n"
                            `delay` seconds apart; counts open streams per key
  /stream-503-then-200?key  first request 503, then like /slow-stream
  /stats?key                {"open": streams open now, "total": streams seen}
"""
import json
import os
import select
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
HITS = {}
OPEN_STREAMS = {}
TOTAL_STREAMS = {}


def hit(key):
    with LOCK:
        HITS[key] = HITS.get(key, 0) + 1
        return HITS[key]


def peer_closed(conn, timeout):
    """Waits up to `timeout` s; True when the peer closed the connection."""
    try:
        readable, _, _ = select.select([conn], [], [], timeout)
        if not readable:
            return False
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HttpTestServer/1"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def send(self, code, body=b"", ctype="application/json", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def stream(self, key, n, delay):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("X-Stream", "yes")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with LOCK:
            OPEN_STREAMS[key] = OPEN_STREAMS.get(key, 0) + 1
            TOTAL_STREAMS[key] = TOTAL_STREAMS.get(key, 0) + 1
        try:
            for i in range(n):
                self.write_chunk(b"chunk %d\n" % i)
                if i + 1 < n and peer_closed(self.connection, delay):
                    self.close_connection = True
                    return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        finally:
            with LOCK:
                OPEN_STREAMS[key] -= 1

    def route(self):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        key = query.get("key", "default")
        body = self.read_body()
        path = url.path
        if path == "/json":
            self.send(200, json.dumps({"ok": True, "n": 42}),
                      headers=[("X-Test", "hello"), ("X-Padded", "  padded  ")])
        elif path == "/echo":
            out = {
                "method": self.command,
                "path": path,
                "query": url.query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("latin-1"),
                "body_len": len(body),
            }
            self.send(200, json.dumps(out))
        elif path == "/hits":
            with LOCK:
                n = HITS.get(key, 0)
            self.send(200, json.dumps({"hits": n}))
        elif path == "/stats":
            with LOCK:
                out = {"open": OPEN_STREAMS.get(key, 0),
                       "total": TOTAL_STREAMS.get(key, 0)}
            self.send(200, json.dumps(out))
        elif path == "/status/503-then-200":
            n = hit(key)
            if n == 1:
                self.send(503, "busy", ctype="text/plain")
            else:
                self.send(200, json.dumps({"attempt": n}))
        elif path == "/429-retry-after":
            if hit(key) == 1:
                self.send(429, "slow down", ctype="text/plain",
                          headers=[("Retry-After", "1")])
            else:
                self.send(200, "ok", ctype="text/plain")
        elif path == "/429-reset-ms":
            if hit(key) == 1:
                self.send(429, "slow down", ctype="text/plain",
                          headers=[("X-Rate-Limit-Time-Reset-Ms", "300")])
            else:
                self.send(200, "ok", ctype="text/plain")
        elif path == "/429-no-header":
            hit(key)
            self.send(429, "quota exceeded", ctype="text/plain")
        elif path == "/big":
            size = int(query.get("size", "100000"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                left = size
                while left > 0:
                    piece = min(left, 16384)
                    self.wfile.write(b"x" * piece)
                    left -= piece
            except OSError:
                self.close_connection = True
        elif path == "/reset":
            hit(key)
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass
        elif path == "/never":
            hit(key)
            self.close_connection = True
            while not peer_closed(self.connection, 0.1):
                pass
        elif path == "/slow-stream":
            hit(key)
            self.stream(key, int(query.get("n", "5")), float(query.get("delay", "0.05")))
        elif path == "/stream-503-then-200":
            if hit(key) == 1:
                self.send(503, "busy", ctype="text/plain")
            else:
                self.stream(key, int(query.get("n", "5")), float(query.get("delay", "0.02")))
        else:
            self.send(404, "not found", ctype="text/plain")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = route

    def handle(self):
        try:
            super().handle()
        except (OSError, ValueError):
            pass  # client went away (the tests do that on purpose)

    def finish(self):
        try:
            super().finish()
        except (OSError, ValueError):
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # aborted connections are part of the tests


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    print("PORT %d" % srv.server_address[1], flush=True)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(1024):
                pass
        except OSError:
            pass
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    srv.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
