"""Plumbing shared by the fake provider servers in this directory (stdlib only).

The fakes (showly_fake.py, bigcommerce_fake.py, mixpeek_fake.py,
bluelink_fake.py) keep everything a provider does its own way: routes, error
envelopes, auth, stream semantics and knobs. What they do the same way lives
here:

- the command line (--port, --host, --token ..., --exit-on-stdin-eof,
  --verbose), the `PORT <n>` line, and stopping on SIGTERM/SIGINT or stdin EOF
  (`arg_parser`, `serve`);
- the request log, stream records and reset epoch behind /_fake/requests and
  /_fake/streams (`BaseState`), and the control routes every fake answers
  the same way (`FakeHandler._control_common`);
- request plumbing: parsing the target, sending bodies, recording requests,
  injected-failure rules (`take_rule`), SSE framing (`sse_frame`,
  `sse_comment`), client-disconnect detection and closing a stream.

The fakes import this module by name: a script's directory is on sys.path
(each fake also puts it there itself, for -I / -P / PYTHONSAFEPATH).
"""

import argparse
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

# Set once the process is stopping: stream loops end ("server_shutdown").
SHUTDOWN = threading.Event()


def path_matches(pattern, path):
    """A path pattern of the control API and the knobs: exact, or "/prefix*"."""
    return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern


def take_rule(rules, method, path=None, matches=None):
    """The first rule of `rules` (injected errors, rate limits) that has
    `times` left (default 1) and matches the request: its `method`, if any,
    and its `path` pattern (default "*"), or instead `matches(rule)` when
    given. Uses up one of its times and returns a copy; None if none matches."""
    for rule in rules or []:
        if rule.get("times", 1) <= 0:
            continue
        if rule.get("method") and rule["method"].upper() != method:
            continue
        if not (matches(rule) if matches is not None
                else path_matches(rule.get("path", "*"), path)):
            continue
        rule["times"] = rule.get("times", 1) - 1
        return dict(rule)
    return None


def rule_list(value):
    """An `errors` knob as stored: copies of its rule objects (see take_rule),
    [] for null; None when it is not a list of objects."""
    rules = value or []
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        return None
    return [dict(r) for r in rules]


def as_list(value):
    """A knob that takes one item or a list of them (next_deploy, ...): a list."""
    return [] if value is None else (value if isinstance(value, list) else [value])


def parse_json_text(text):
    """(value, True) for JSON text, (None, True) for a blank one, (None, False)
    when it is not JSON."""
    try:
        return (json.loads(text) if text.strip() else None), True
    except ValueError:
        return None, False


def header_dict(headers):
    """Request headers as recorded: lowercased names, repeats joined by ", "."""
    out = {}
    for k, v in headers.items():
        k = k.lower()
        out[k] = out[k] + ", " + v if k in out else v
    return out


def sse_frame(data, event=None, event_id=None, eol=b"\n"):
    """One SSE event: `event:` (if not None), `id:` (if not None), one `data:`
    line per line of `data` (bytes), then a blank line; every line ends `eol`."""
    lines = []
    if event is not None:
        lines.append(b"event: " + event.encode())
    if event_id is not None:
        lines.append(b"id: " + event_id.encode())
    for piece in data.split(b"\n"):
        lines.append(b"data: " + piece)
    return eol.join(lines) + eol + eol


def sse_comment(text="keep-alive", eol=b"\n"):
    """An SSE comment line (a keep-alive) and a blank line."""
    return b": " + text.encode() + eol + eol


class BaseState:
    """What every fake's State holds for the shared control routes: the
    accepted tokens, the lock, the request log, stream records, a sequence and
    the reset epoch (streams opened before a reset do not record their
    close). Subclasses set their own fields, knobs included, in
    reset_provider()."""

    max_recorded = 20000    # request records kept (oldest dropped)

    def __init__(self, tokens):
        self.tokens = tokens
        self.lock = threading.RLock()
        self.epoch = 0
        self.reset()

    def reset(self):
        """POST /_fake/reset: forget everything."""
        with self.lock:
            self.epoch += 1
            self.seq = 0
            self.requests = []
            self.streams_open = {}
            self.streams_opened = 0
            self.streams_closed = []
            self.stream_seq = 0
            self.reset_provider()

    def reset_provider(self):
        """Sets the fake's own fields (called by reset, the lock held)."""
        self.knobs = {}

    def next_seq(self):
        self.seq += 1
        return self.seq

    def record(self, rec):
        """Logs a request record; returns the `latency_ms` knob's delay (s)."""
        with self.lock:
            self.requests.append(rec)
            if len(self.requests) > self.max_recorded:
                del self.requests[:len(self.requests) - self.max_recorded]
            return (self.knobs.get("latency_ms") or 0) / 1000.0

    def find_requests(self, qs, fields=()):
        """GET /_fake/requests: filtered by ?path= (pattern), ?method= and any
        of `fields` (exact match of that record field)."""
        reqs = self.requests
        pp = qs.get("path")
        if pp:
            reqs = [r for r in reqs if path_matches(pp, r["path"])]
        if qs.get("method"):
            reqs = [r for r in reqs if r["method"] == qs["method"].upper()]
        for f in fields:
            if qs.get(f):
                reqs = [r for r in reqs if r[f] == qs[f]]
        return reqs

    def open_stream(self, fields):
        """Records a stream opening: {"streamId", **fields}. Returns the record
        and the epoch to hand to close_stream."""
        with self.lock:
            self.stream_seq += 1
            rec = {"streamId": self.stream_seq}
            rec.update(fields)
            self.streams_open[rec["streamId"]] = rec
            self.streams_opened += 1
            return rec, self.epoch

    def close_stream(self, rec, epoch, reason):
        with self.lock:
            rec["closedAt"] = time.time()
            rec["reason"] = reason
            if self.epoch == epoch:
                self.streams_open.pop(rec["streamId"], None)
                self.streams_closed.append(rec)

    def streams_json(self):
        return {"open": len(self.streams_open), "opened": self.streams_opened,
                "openStreams": list(self.streams_open.values()),
                "closed": self.streams_closed, "now": time.time()}


class FakeHandler(BaseHTTPRequestHandler):
    """Base of each fake's request handler. Subclasses set server_version and
    log_name, their do_* methods, and (for _control_common) _set_global."""

    protocol_version = "HTTP/1.1"
    log_name = "fake"
    verbose = False
    state = None            # the fake's State (set by serve)
    request_filters = ()    # further exact-match filters of GET /_fake/requests
    rec = None              # this request's record (None: not recorded)

    def log_message(self, fmt, *args):
        if self.verbose:
            sys.stderr.write(self.log_name + ": " + (fmt % args) + "\n")

    # -- requests -----------------------------------------------------------
    def _begin(self):
        """Starts a request: no record yet, self.qs = the query (last value of
        each name). Returns (split URL, unquoted path, non-empty path parts)."""
        self.rec = None
        url = urlsplit(self.path)
        path = unquote(url.path)
        self.qs = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        return url, path, [p for p in path.split("/") if p]

    def _read_sized(self, limit):
        """The Content-Length body, b"" without one; None (and the connection
        marked to close) when it is over `limit` bytes."""
        n = int(self.headers.get("Content-Length") or 0)
        if n > limit:
            self.close_connection = True
            return None
        return self.rfile.read(n) if n > 0 else b""

    def _read_request(self, read_body, api_error, error_json, bad_body_json):
        """Reads the body with the fake's read_body(). When that fails, answers
        and returns None: an `api_error` (the fake's error type) with
        error_json(error), a body that cannot be read (ValueError, OSError)
        with 400 `bad_body_json`, closing the connection."""
        try:
            return read_body()
        except api_error as e:
            self._send_json(e.status, error_json(e))
        except (ValueError, OSError):
            self.close_connection = True
            self._send_json(400, bad_body_json)
        return None

    def _record(self, url, path, body, fields=None, tail=None):
        """Logs this request for GET /_fake/requests as {method, path, query,
        rawQuery, headers, body, **fields, ts, status, **tail}, then waits the
        `latency_ms` knob."""
        rec = {"method": self.command, "path": path, "query": self.qs,
               "rawQuery": url.query, "headers": header_dict(self.headers), "body": body}
        rec.update(fields or {})
        rec["ts"], rec["status"] = time.time(), None
        rec.update(tail or {})
        self.rec = rec
        latency = self.state.record(rec)
        if latency:
            time.sleep(latency)

    def _send(self, status, body, ctype, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if self.rec is not None:
            self.rec["status"] = status

    def _send_json(self, status, obj, headers=None):
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _shutdown_socket(self):
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _close_unanswered(self):
        """An injected failure: close the connection without an answer."""
        self.close_connection = True
        if self.rec is not None:
            self.rec["status"] = "closed"
        self._shutdown_socket()

    # -- control API ----------------------------------------------------------
    def _control_common(self, p, body):
        """The /_fake routes every fake answers alike (call with the state
        locked): POST reset, GET/POST knobs (POST: self._set_global(body)),
        GET/DELETE requests, GET streams. True when `p` was one of them."""
        m, st, ok = self.command, self.state, self._send_json
        if p == ["reset"] and m == "POST":
            st.reset()
            ok(200, {"ok": True})
        elif p == ["knobs"] and m in ("GET", "POST"):
            if m == "POST":
                self._set_global(body)
            ok(200, st.knobs)
        elif p == ["requests"] and m == "GET":
            ok(200, st.find_requests(self.qs, self.request_filters))
        elif p == ["requests"] and m == "DELETE":
            st.requests.clear()
            ok(200, {"ok": True})
        elif p == ["streams"] and m == "GET":
            ok(200, st.streams_json())
        else:
            return False
        return True

    # -- SSE ------------------------------------------------------------------
    def _start_sse(self, extra_headers=()):
        """200 text/event-stream, no-cache, `extra_headers`, Connection: close
        (no length: the body ends when the server closes)."""
        if self.rec is not None:
            self.rec["status"] = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        for k, v in extra_headers:
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def _write(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def _client_gone(self, timeout):
        """Waits up to `timeout` s for the client; True when it has closed its
        side (anything it sends on a stream is read and ignored)."""
        sock = self.connection
        try:
            r, _, _ = select.select([sock], [], [], max(0.0, timeout))
            if r:
                return not sock.recv(65536)
        except (OSError, ValueError):
            return True
        return False

    def _keep_alive(self, rec, counter, write=None, eol=b"\n"):
        """Sends a keep-alive comment (through `write`, default _write) and
        counts it in rec[counter]; returns the monotonic time after it."""
        (write or self._write)(sse_comment("keep-alive", eol))
        with self.state.lock:
            rec[counter] += 1
        return time.monotonic()

    def _end_stream(self, rec, epoch, reason):
        """Records why the stream ends, then closes its connection. In that
        order: a client that sees the close and at once asks /_fake/streams
        must find the record there."""
        self.close_connection = True
        self.state.close_stream(rec, epoch, reason)
        self._shutdown_socket()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


def arg_parser(description, token_help, more_args=None):
    """The fakes' command line: --port, --host, --token (repeatable), then
    more_args(parser) adds its own, then --exit-on-stdin-eof, --verbose."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--token", action="append", help=token_help)
    if more_args is not None:
        more_args(ap)
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    return ap


def serve(args, handler_cls, state):
    """Binds, prints "PORT <n>" (flushed) and serves until SIGTERM/SIGINT, or
    stdin EOF with --exit-on-stdin-eof; then sets SHUTDOWN so that streams
    close, and returns 0 (the exit status)."""
    handler_cls.state = state
    handler_cls.verbose = args.verbose
    srv = Server((args.host, args.port), handler_cls)
    sys.stdout.write("PORT %d\n" % srv.server_address[1])
    sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    signal.signal(signal.SIGINT, lambda s, f: stop.set())
    if args.exit_on_stdin_eof:
        def watch_stdin():
            try:
                while os.read(sys.stdin.fileno(), 65536):
                    pass
            except OSError:
                pass
            stop.set()
        threading.Thread(target=watch_stdin, daemon=True).start()

    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    while not stop.wait(0.2):
        pass
    SHUTDOWN.set()
    srv.shutdown()
    srv.server_close()
    time.sleep(0.05)  # let stream threads notice SHUTDOWN and record their close
    return 0
