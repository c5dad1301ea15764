#!/usr/bin/env python3
"""Fake Mixpeek Apps ("Canvas") API server for deploy-mcp end-to-end tests
(stdlib only).

    python3 tests/fakes/mixpeek_fake.py [--port 0] [--host 127.0.0.1]
        [--token TOKEN ...] [--exit-on-stdin-eof] [--verbose]

Prints "PORT <n>" as the first stdout line once bound. See tests/fakes/README.md
(section "Mixpeek") for the API, the /_fake control API and the knobs.

Design: a deploy owns a *timeline* fixed at creation on a monotonic clock:
queued until `queued_ms`, then building while its log lines fall due one by
one (`line_delay_ms` apart), then complete (or failed) `final_ms` after the
last line. GET deploy, the versions list and the log stream all derive their
answers from "now", so they always agree and a deploy progresses whether or
not anybody streams it. The log stream has no ids and every connection
replays all lines due so far before going live, as the real one does.
"""

import io
import json
import os
import secrets
import sys
import time
import zipfile
from datetime import datetime, timezone
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (tests/fakes/common.py)

MAX_BODY = 64 * 1024 * 1024       # uploads included
DEFAULT_LINE_DELAY_MS = 50
DEFAULT_QUEUED_MS = 100
DEFAULT_FINAL_MS = 100
DEFAULT_EXPIRES_IN = 900
STATUSES = ("queued", "building", "complete", "failed")

# Raw bytes appended to some lines with the invalid_utf8 knob, and what a
# WHATWG decoder (Python's 'replace') makes of them.
BAD_SUFFIXES = ((b" \xff\xfe", " \ufffd\ufffd"), (b" \xe2\x82", " \ufffd"))

DEPLOY_KNOBS = {
    # connection behaviour (read at every connection)
    "drop_after": int, "drop_every": int, "drop_partial": bool, "keepalive_ms": int,
    "hang": bool,
    # outcome (read at query time)
    "outcome": str, "error_message": str,
    # timeline shaping (read at creation only)
    "lines": int, "line_delay_ms": int, "queued_ms": int, "final_ms": int,
    "burst": int, "invalid_utf8": bool, "script": list,
}
GLOBAL_KNOBS = ("default_knobs", "next_deploy", "rate_limits", "rate_window_s", "errors",
                "required_namespace", "missing_apps", "latency_ms", "default_environment",
                "expires_in")
ROUTES = ("upload-url", "deploy", "get-deploy", "logs-stream", "versions", "upload")


class ApiError(Exception):
    """A Mixpeek error envelope."""

    TYPES = {400: "BadRequestError", 403: "UnauthorizedError", 404: "NotFoundError",
             405: "MethodNotAllowedError", 408: "TimeoutError", 409: "AlreadyExistsError",
             422: "ValidationError", 429: "TooManyRequestsError", 500: "InternalServerError"}

    def __init__(self, status, message, type_=None, code=None, details=None, headers=None):
        super().__init__(message)
        self.status, self.message = status, message
        self.type = type_ or self.TYPES.get(status, "InternalServerError")
        self.code, self.details, self.headers = code, details, headers or {}

    def body(self):
        err = {"message": self.message, "type": self.type}
        if self.code is not None:
            err["code"] = self.code
        if self.details is not None:
            err["details"] = self.details
        return {"success": False, "status": self.status, "error": err}


def iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rand_hex(n):
    return secrets.token_hex(n // 2 + 1)[:n]


def validate_knobs(knobs):
    if not isinstance(knobs, dict):
        raise ApiError(400, "knobs must be an object")
    for k, v in knobs.items():
        if k not in DEPLOY_KNOBS:
            raise ApiError(400, "unknown knob %r (known: %s)" % (k, ", ".join(DEPLOY_KNOBS)))
        if v is not None and not isinstance(v, DEPLOY_KNOBS[k]):
            raise ApiError(400, "knob %s must be %s" % (k, DEPLOY_KNOBS[k].__name__))
    if knobs.get("outcome") not in (None, "complete", "failed"):
        raise ApiError(400, "outcome must be complete|failed")


DEFAULT_SCRIPT = [
    "Received bundle {filename}",
    "Extracting bundle",
    "Found canvas.json (3 pages, 12 components)",
    "Installing dependencies",
    "WARN peer dependency react@17 is older than the recommended react@18",
    "Building canvas",
    "DEBUG cache key 9f2c1e",
    "Compiled 12 components in 1.4s",
    "Uploading assets",
    "Publishing to {environment}",
    "Deploy complete",
]
FAILED_TAIL = [
    "ERROR component Chart: unknown prop 'seriez'",
    "Build failed with exit code 1",
]


class Deploy:
    def __init__(self, st, app_id, environment, message, source, bundle_key, knobs,
                 status=None, filename="bundle.zip"):
        self.id = "dpl_" + rand_hex(16)
        self.seq = st.next_seq()
        self.app_id, self.environment, self.message = app_id, environment, message
        self.source, self.bundle_key = source, bundle_key
        self.knobs = dict(knobs)
        if status == "failed":
            self.knobs["outcome"] = "failed"
        self.connections = 0
        self.max_sent = 0             # most lines any connection has sent
        k = self.knobs
        if k.get("script") is not None:
            texts = [str(x) for x in k["script"]]
        elif k.get("burst"):
            texts = ["burst line %d/%d" % (i + 1, k["burst"]) for i in range(k["burst"])]
        elif k.get("lines") is not None:
            texts = ["deploy line %d/%d" % (i + 1, k["lines"]) for i in range(k["lines"])]
        else:
            texts = [t.format(filename=filename, environment=environment) for t in DEFAULT_SCRIPT]
            if k.get("outcome") == "failed":
                texts = texts[:8] + FAILED_TAIL
        # (text, raw invalid bytes appended on the wire, expected text after repair)
        self.lines = []
        for i, t in enumerate(texts):
            bad, want = b"", t
            if k.get("invalid_utf8") and i % 3 != 0:
                bad, fixed = BAD_SUFFIXES[i % 3 - 1]
                want = t + fixed
            self.lines.append((t, bad, want))
        delay = (k.get("line_delay_ms") if k.get("line_delay_ms") is not None
                 else DEFAULT_LINE_DELAY_MS) / 1000.0
        if k.get("burst"):
            delay = 0.0
        queued = (k.get("queued_ms") if k.get("queued_ms") is not None
                  else DEFAULT_QUEUED_MS) / 1000.0
        final = (k.get("final_ms") if k.get("final_ms") is not None
                 else DEFAULT_FINAL_MS) / 1000.0
        # offsets from creation, seconds
        self.build_at = queued
        self.line_at = [queued + delay * (i + 1) for i in range(len(self.lines))]
        self.end_at = (self.line_at[-1] if self.line_at else queued) + final
        now_m, now_w = time.monotonic(), time.time()
        shift = 0.0
        if status == "building":
            shift = self.build_at
        elif status in ("complete", "failed"):
            shift = self.end_at
        self.t0 = now_m - shift
        self.w0 = now_w - shift

    # -- timeline --------------------------------------------------------
    def age(self, now):
        return now - self.t0

    def due_lines(self, now):
        a = self.age(now)
        return sum(1 for x in self.line_at if x <= a)

    def next_due(self, now):
        """Monotonic time of the next line (or of the end), None if none."""
        a = self.age(now)
        for x in self.line_at:
            if x > a:
                return self.t0 + x
        if a < self.end_at:
            return self.t0 + self.end_at
        return None

    def terminal(self, now):
        return not self.knobs.get("hang") and self.age(now) >= self.end_at

    def status(self, now):
        a = self.age(now)
        if a < self.build_at:
            return "queued"
        if not self.terminal(now):
            return "building"
        return "failed" if self.knobs.get("outcome") == "failed" else "complete"

    def line_ts(self, i):
        return round(self.w0 + self.line_at[i], 3)

    def to_json(self, now=None):
        now = time.monotonic() if now is None else now
        st = self.status(now)
        done = st in ("complete", "failed")
        return {
            "deploy_id": self.id, "app_id": self.app_id, "status": st,
            "environment": self.environment, "message": self.message, "source": self.source,
            "bundle_s3_key": self.bundle_key,
            "error": (self.knobs.get("error_message") or "Build failed with exit code 1")
            if st == "failed" else None,
            "queued_at": iso(self.w0),
            "started_at": iso(self.w0 + self.build_at) if st != "queued" else None,
            "completed_at": iso(self.w0 + self.end_at) if done else None,
        }

    def internal_json(self, now=None):
        d = self.to_json(now)
        d["_fake"] = {"knobs": self.knobs, "lines": [w for _, _, w in self.lines],
                      "timestamps": [self.line_ts(i) for i in range(len(self.lines))],
                      "connections": self.connections, "maxSent": self.max_sent,
                      "dueLines": self.due_lines(time.monotonic() if now is None else now)}
        return d


class State(common.BaseState):
    def reset_provider(self):
        self.knobs = {"missing_apps": ["app_missing"]}
        self.deploys = {}
        self.uploads = {}             # bundle key -> record
        self.versions = {}            # app -> [version]
        self.versioned = set()        # deploy ids that got their version
        self.rate = {}                # route -> [timestamps]

    def sync_versions(self, now):
        """A deploy that completed becomes the newest version of its app."""
        done = [d for d in self.deploys.values()
                if d.id not in self.versioned and d.status(now) == "complete"]
        for d in sorted(done, key=lambda d: d.w0 + d.end_at):
            self.versioned.add(d.id)
            self.add_version(d.app_id, {"deploy_id": d.id, "bundle_s3_key": d.bundle_key,
                                        "environment": d.environment, "message": d.message,
                                        "created_at": iso(d.w0 + d.end_at)})

    def add_version(self, app_id, fields):
        vs = self.versions.setdefault(app_id, [])
        v = {"version_id": "ver_" + rand_hex(12), "version": len(vs) + 1}
        v.update(fields)
        v.setdefault("created_at", iso(time.time()))
        for o in vs:   # the newest version of an environment is the active one
            if o.get("environment") == v.get("environment"):
                o["is_active"] = False
        v.setdefault("is_active", True)
        vs.append(v)
        return v


STATE = None


class Handler(common.FakeHandler):
    server_version = "MixpeekFake/1.0"
    log_name = "mixpeek-fake"
    request_filters = ("route",)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = lambda self: self._handle()

    # -- plumbing ---------------------------------------------------------
    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise ApiError(501, "chunked request bodies are not supported", "NotImplemented")
        raw = self._read_sized(MAX_BODY)
        if raw is None:
            raise ApiError(413, "request body too large", "PayloadTooLargeError")
        return raw

    def _send_s3_error(self, status, code, message):
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                "<Message>%s</Message></Error>" % (code, message)).encode()
        self._send(status, body, "application/xml")

    def _handle(self):
        url, path, parts = self._begin()
        raw = self._read_request(self._read_body, ApiError, ApiError.body,
                                 ApiError(400, "bad request body").body())
        if raw is None:
            return
        self.raw_body = raw
        self.json, self.json_ok = None, True
        is_upload = path.startswith("/_storage/")
        if raw and not is_upload:
            try:
                self.json = json.loads(raw.decode("utf-8"))
            except ValueError:
                self.json_ok = False
        is_fake = path == "/_fake" or path.startswith("/_fake/")
        if not is_fake:
            if is_upload:
                body = {"bytes": len(raw)}
            elif self.json_ok and raw:
                body = self.json
            else:
                body = raw.decode("utf-8", "replace") or None
            self._record(url, path, body, {"route": self._route(parts)})
        try:
            if is_fake:
                self._control(parts[1:])
            elif is_upload:
                self._upload(parts)
            else:
                self._api(parts)
        except ApiError as e:
            self._send_json(e.status, e.body(), e.headers)

    @staticmethod
    def _route(parts):
        if parts[:1] == ["_storage"]:
            return "upload"
        if len(parts) < 3 or parts[:2] != ["v1", "apps"]:
            return None
        rest = parts[3:]
        if rest == ["deploy", "upload-url"]:
            return "upload-url"
        if rest == ["deploy"]:
            return "deploy"
        if len(rest) == 2 and rest[0] == "deploys":
            return "get-deploy"
        if len(rest) == 4 and rest[0] == "deploys" and rest[2:] == ["logs", "stream"]:
            return "logs-stream"
        if rest == ["versions"]:
            return "versions"
        return None

    def _injected(self, path, route):
        """Rules match by method, route and path pattern, each if given."""
        def matches(rule):
            p = rule.get("path")
            return ((not rule.get("route") or rule["route"] == route)
                    and (not p or common.path_matches(p, path)))

        with STATE.lock:
            return common.take_rule(STATE.knobs.get("errors"), self.command, matches=matches)

    def _rate_limit(self, route):
        """Per-route sliding window (Mixpeek: e.g. 60/min); 429 without Retry-After."""
        with STATE.lock:
            limits = STATE.knobs.get("rate_limits") or {}
            if route not in limits:
                return
            window = float(STATE.knobs.get("rate_window_s") or 60)
            now = time.monotonic()
            hits = [t for t in STATE.rate.get(route, []) if now - t < window]
            if len(hits) >= int(limits[route]):
                STATE.rate[route] = hits
                raise ApiError(429, "Rate limit exceeded for %s: %d requests per %gs"
                               % (route, int(limits[route]), window))
            hits.append(now)
            STATE.rate[route] = hits

    def _auth(self):
        h = self.headers.get("Authorization") or ""
        scheme, _, tok = h.partition(" ")
        if scheme.lower() != "bearer" or tok.strip() not in STATE.tokens:
            raise ApiError(403, "Invalid or missing API key" if h else
                           "Missing Authorization header")

    def _method(self, *allowed):
        if self.command not in allowed:
            raise ApiError(405, "Method Not Allowed", headers={"Allow": ", ".join(allowed)})

    # -- provider API -------------------------------------------------------
    def _api(self, parts):
        path = "/" + "/".join(parts)
        route = self._route(parts)
        rule = self._injected(path, route)
        if rule:
            raise ApiError(int(rule.get("status", 500)), rule.get("message", "injected error"),
                           rule.get("type"), rule.get("code"), rule.get("details"))
        self._auth()
        if route is None:
            raise ApiError(404, "Not Found: %s %s" % (self.command, path))
        self._rate_limit(route)
        app_id = parts[2]
        with STATE.lock:
            ns = STATE.knobs.get("required_namespace")
            if ns and self.headers.get("X-Namespace") != ns:
                raise ApiError(404, "App %s not found in this namespace" % app_id)
            if app_id in (STATE.knobs.get("missing_apps") or []):
                raise ApiError(404, "App %s not found" % app_id)
        if route == "upload-url":
            self._method("POST")
            return self._upload_url(app_id)
        if route == "deploy":
            self._method("POST")
            return self._deploy(app_id)
        if route == "get-deploy":
            self._method("GET")
            with STATE.lock:
                return self._send_json(200, self._dep(app_id, parts[4]).to_json())
        if route == "versions":
            self._method("GET")
            with STATE.lock:
                STATE.sync_versions(time.monotonic())
                vs = list(STATE.versions.get(app_id, []))
            return self._send_json(200, {"versions": vs, "total": len(vs)})
        self._method("GET")
        return self._logs(app_id, parts[4])

    def _dep(self, app_id, dep_id):
        d = STATE.deploys.get(dep_id)
        if d is None or d.app_id != app_id:
            raise ApiError(404, "Deploy %s not found" % dep_id)
        return d

    def _body(self):
        if not self.json_ok:
            raise ApiError(400, "Request body is not valid JSON")
        if not isinstance(self.json, dict):
            raise ApiError(422, "Request body must be an object", details=[
                {"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}])
        return self.json

    def _upload_url(self, app_id):
        b = self._body()
        problems = []
        fn = b.get("filename")
        if not isinstance(fn, str) or not fn:
            problems.append({"loc": ["body", "filename"], "msg": "field required",
                             "type": "value_error.missing"})
        if b.get("content_type") != "application/zip":
            problems.append({"loc": ["body", "content_type"],
                             "msg": "only application/zip bundles are accepted",
                             "type": "value_error"})
        if problems:
            raise ApiError(422, "Validation failed", details=problems)
        key = "apps/%s/bundles/%s/%s" % (app_id, rand_hex(16), fn)
        sig = secrets.token_hex(32)
        with STATE.lock:
            expires = int(STATE.knobs.get("expires_in") or DEFAULT_EXPIRES_IN)
            STATE.uploads[key] = {"bundle_s3_key": key, "app_id": app_id, "filename": fn,
                                  "signature": sig, "expires_at": time.time() + expires,
                                  "uploaded": False, "bytes": 0, "validZip": None,
                                  "entries": [], "contentType": None, "puts": 0}
        host = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]
        url = ("http://%s/_storage/%s?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=%d"
               "&X-Amz-Signature=%s" % (host, quote(key), expires, sig))
        self._send_json(200, {"upload_url": url, "bundle_s3_key": key, "expires_in": expires})

    def _upload(self, parts):
        """The signed storage URL (S3-like: XML errors, no API auth)."""
        if self.command != "PUT":
            return self._send_s3_error(405, "MethodNotAllowed", "Use PUT")
        key = "/".join(parts[1:])
        with STATE.lock:
            up = STATE.uploads.get(key)
            if up is None:
                return self._send_s3_error(404, "NoSuchUpload", "Unknown upload key")
            up["puts"] += 1
            if self.headers.get("Authorization"):
                # A presigned URL is its own credential; S3 refuses two.
                return self._send_s3_error(400, "InvalidArgument",
                                           "Only one auth mechanism allowed")
            if self.qs.get("X-Amz-Signature") != up["signature"]:
                return self._send_s3_error(403, "SignatureDoesNotMatch",
                                           "The request signature does not match")
            if time.time() > up["expires_at"]:
                return self._send_s3_error(403, "AccessDenied", "Request has expired")
            ctype = self.headers.get("Content-Type")
            up["contentType"] = ctype
            if ctype != "application/zip":   # the content type is part of the signature
                return self._send_s3_error(403, "SignatureDoesNotMatch",
                                           "Content-Type differs from the signed one")
            try:
                with zipfile.ZipFile(io.BytesIO(self.raw_body)) as z:
                    bad = z.testzip()
                    up["entries"] = sorted(z.namelist())
                    up["validZip"] = bad is None
            except (zipfile.BadZipFile, OSError, ValueError):
                up["validZip"], up["entries"] = False, []
            up["uploaded"] = True
            up["bytes"] = len(self.raw_body)
        self._send(200, b"", "application/xml", {"ETag": '"%s"' % rand_hex(32)})

    def _deploy(self, app_id):
        b = self._body()
        key = b.get("bundle_s3_key")
        env = b.get("environment")
        problems = []
        if not isinstance(key, str) or not key:
            problems.append({"loc": ["body", "bundle_s3_key"], "msg": "field required",
                             "type": "value_error.missing"})
        if env is not None and env not in ("staging", "production"):
            problems.append({"loc": ["body", "environment"],
                             "msg": "value is not a valid enumeration member; permitted: "
                                    "'staging', 'production'", "type": "type_error.enum"})
        if b.get("message") is not None and not isinstance(b.get("message"), str):
            problems.append({"loc": ["body", "message"], "msg": "str type expected",
                             "type": "type_error.str"})
        if problems:
            raise ApiError(422, "Validation failed", details=problems)
        with STATE.lock:
            up = STATE.uploads.get(key)
            if up is None or up["app_id"] != app_id:
                raise ApiError(404, "Bundle %s not found" % key)
            if not up["uploaded"]:
                raise ApiError(400, "Bundle %s has not been uploaded" % key)
            if not up["validZip"]:
                raise ApiError(422, "Bundle is not a valid zip archive", details=[
                    {"loc": ["body", "bundle_s3_key"], "msg": "not a zip archive",
                     "type": "value_error.bundle"}])
            if env is None:
                # The documented default changed between API versions.
                env = STATE.knobs.get("default_environment") or "production"
            knobs = dict(STATE.knobs.get("default_knobs") or {})
            nd = STATE.knobs.get("next_deploy") or []
            if nd:
                knobs.update(nd.pop(0).get("knobs") or {})
            d = Deploy(STATE, app_id, env, b.get("message") or "", b.get("source") or "",
                       key, knobs, filename=up["filename"])
            STATE.deploys[d.id] = d
        self._send_json(200, {"app_id": app_id, "deploy_id": d.id, "status": "queued",
                              "environment": env, "message": d.message})

    # -- the deploy-log stream --------------------------------------------
    def _logs(self, app_id, dep_id):
        with STATE.lock:
            d = self._dep(app_id, dep_id)
            k = dict(d.knobs)
            conn = d.connections
            d.connections += 1
            replay_point = d.max_sent
            rec, epoch = STATE.open_stream({
                "deployId": dep_id, "connection": conn + 1, "openedAt": time.time(),
                "closedAt": None, "linesSent": 0, "replayPoint": replay_point,
                "doneSent": False, "keepalivesSent": 0, "reason": None})
        write = self._write
        reason = "error"

        def render(i):
            text, bad, _ = d.lines[i]
            data = json.dumps({"ts": d.line_ts(i), "line": text}, ensure_ascii=False).encode()
            if bad:   # raw bytes json.dumps cannot carry, inside the string
                data = data[:-2] + bad + data[-2:]
            return common.sse_frame(data)

        try:
            self._start_sse()
            i = sent = 0
            last_write = time.monotonic()
            while True:
                if common.SHUTDOWN.is_set() or STATE.epoch != epoch:
                    reason = "server_shutdown"
                    break
                now = time.monotonic()
                with STATE.lock:
                    k = dict(d.knobs)
                    due = d.due_lines(now)
                    terminal = d.terminal(now)
                    nxt = d.next_due(now)
                if i < due:
                    limit = None
                    if k.get("drop_every"):
                        limit = replay_point + int(k["drop_every"])
                    elif k.get("drop_after") and conn == 0:
                        limit = int(k["drop_after"])
                    if limit is not None and sent >= limit:
                        if k.get("drop_partial"):
                            b = render(i)
                            write(b[:max(1, len(b) // 2)])
                        reason = "dropped"
                        break
                    write(render(i))
                    i += 1
                    sent += 1
                    last_write = time.monotonic()
                    with STATE.lock:
                        rec["linesSent"] = sent
                        d.max_sent = max(d.max_sent, sent)
                    continue
                if i >= len(d.lines) and terminal:
                    write(common.sse_frame(b"{}", "done"))
                    rec["doneSent"] = True
                    reason = "done"
                    break
                wait = 0.2
                if nxt is not None:
                    wait = min(wait, nxt - now)
                ka = k.get("keepalive_ms") or (500 if k.get("hang") else None)
                if ka:
                    wait = min(wait, last_write + ka / 1000.0 - now)
                    if wait <= 0:
                        last_write = self._keep_alive(rec, "keepalivesSent")
                        continue
                if self._client_gone(wait):
                    reason = "client_closed"
                    break
        except OSError:  # BrokenPipeError, ConnectionResetError, ...
            reason = "client_closed"
        finally:
            self._end_stream(rec, epoch, reason)

    # -- control API (no auth; bare JSON) ------------------------------------
    def _control(self, p):
        m = self.command
        if not self.json_ok or (self.json is not None and not isinstance(self.json, dict)):
            raise ApiError(400, "control bodies must be JSON objects")
        body = self.json or {}
        ok = self._send_json
        with STATE.lock:
            if self._control_common(p, body):
                return
            if p == ["uploads"] and m == "GET":
                return ok(200, [{k: v for k, v in u.items() if k != "signature"}
                                for u in STATE.uploads.values()])
            if p == ["deploys"] and m == "POST":
                return ok(201, self._fake_deploy(body).internal_json())
            if p == ["deploys"] and m == "GET":
                return ok(200, [d.to_json() for d in
                                sorted(STATE.deploys.values(), key=lambda d: d.seq)])
            if len(p) in (2, 3) and p[0] == "deploys":
                d = STATE.deploys.get(p[1])
                if d is None:
                    raise ApiError(404, "Deploy %s not found" % p[1])
                if len(p) == 2 and m == "GET":
                    return ok(200, d.internal_json())
                if len(p) == 3 and p[2] == "knobs" and m == "POST":
                    validate_knobs({k: v for k, v in body.items()})
                    for k, v in body.items():
                        if v is None:
                            d.knobs.pop(k, None)
                        else:
                            d.knobs[k] = v
                    return ok(200, d.internal_json())
            if p == ["versions"] and m == "POST":
                app = body.get("app_id") or "app_test"
                fields = {k: v for k, v in body.items() if k != "app_id"}
                return ok(201, STATE.add_version(app, fields))
            if p == ["versions"] and m == "GET":
                STATE.sync_versions(time.monotonic())
                return ok(200, STATE.versions.get(self.qs.get("app_id") or "app_test", []))
        raise ApiError(404, "No control route for %s %s" % (m, self.path))

    def _set_global(self, body):
        for k in body:
            if k not in GLOBAL_KNOBS:
                raise ApiError(400, "unknown global knob %r (known: %s)"
                               % (k, ", ".join(GLOBAL_KNOBS)))
        if "default_knobs" in body:
            body["default_knobs"] = body["default_knobs"] or {}
            validate_knobs(body["default_knobs"])
        if "next_deploy" in body:
            nd = common.as_list(body["next_deploy"])
            for spec in nd:
                if not isinstance(spec, dict):
                    raise ApiError(400, "next_deploy entries must be objects")
                validate_knobs(spec.get("knobs") or {})
            body["next_deploy"] = nd
        if "rate_limits" in body:
            rl = body["rate_limits"] or {}
            if not isinstance(rl, dict) or any(r not in ROUTES for r in rl):
                raise ApiError(400, "rate_limits maps routes (%s) to requests per window"
                               % ", ".join(ROUTES))
            body["rate_limits"] = rl
            STATE.rate.clear()
        if "errors" in body:
            body["errors"] = common.rule_list(body["errors"])
            if body["errors"] is None:
                raise ApiError(400, "errors must be a list of objects")
        STATE.knobs.update(body)

    def _fake_deploy(self, body):
        env = body.get("environment", "staging")
        if env not in ("staging", "production"):
            raise ApiError(400, "environment must be staging|production")
        status = body.get("status")
        if status is not None and status not in STATUSES:
            raise ApiError(400, "status must be one of " + "|".join(STATUSES))
        knobs = dict(STATE.knobs.get("default_knobs") or {})
        knobs.update(body.get("knobs") or {})
        validate_knobs(knobs)
        app = body.get("app_id") or "app_test"
        d = Deploy(STATE, app, env, body.get("message", "seeded by the test"),
                   body.get("source", "cli_upload"),
                   body.get("bundle_s3_key", "apps/%s/bundles/seeded.zip" % app), knobs,
                   status=status)
        STATE.deploys[d.id] = d
        return d


def main(argv=None):
    global STATE
    args = common.arg_parser(
        "Fake Mixpeek Apps API for deploy-mcp tests",
        "accepted API key (repeatable; default mxp_sk_faketoken)").parse_args(argv)
    STATE = State(set(args.token or ["mxp_sk_faketoken"]))
    return common.serve(args, Handler, STATE)


if __name__ == "__main__":
    sys.exit(main())
