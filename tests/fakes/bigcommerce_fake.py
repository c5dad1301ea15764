#!/usr/bin/env python3
"""Fake BigCommerce Infrastructure Hosting API for deploy-mcp tests (stdlib only).

    python3 tests/fakes/bigcommerce_fake.py [--port 0] [--host 127.0.0.1]
        [--token TOKEN ...] [--exit-on-stdin-eof] [--verbose]

Prints "PORT <n>" as the first stdout line once bound. See tests/fakes/README.md
(section "BigCommerce") for the API, the /_fake control API and the knobs.

Faithful to PROVIDERS.md: X-Auth-Token auth (401 bad token, 403 feature not
enabled), RFC 7807-like errors, signed upload URLs (served by this same process
under /_upload/, and like S3 they echo the signature back in their 403 XML),
one deployment in progress per project (409), an events stream of whole
snapshots without ids that the server closes every 30 s and restarts with the
current snapshot, and a runtime-log tail with keep-alives every 15 s that ends
after 60 s. Every period is a knob so tests run fast.

Timeline design: a deployment owns a list of snapshots, each due at a time on
a monotonic clock (creation + i * step_ms). The current snapshot is the last
one due, so a deployment advances by wall clock whether anybody streams it.
"""

import bisect
import hashlib
import hmac
import io
import json
import os
import sys
import time
import uuid
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (tests/fakes/common.py)

MAX_JSON_BODY = 1 << 20
DEFAULT_MAX_UPLOAD = 64 << 20          # "64 MB compressed"
DEFAULT_TOKEN = "bc_faketoken"
PROBLEM_TYPE = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"

# (deployment_status, step, progress) of a successful deployment.
STEPS = [
    ("queued", None, None),
    ("in_progress", "initializing", 0),
    ("in_progress", "downloading", 10),
    ("in_progress", "unzipping", 25),
    ("in_progress", "processing", 40),
    ("in_progress", "processing", 60),
    ("in_progress", "deploying", 75),
    ("in_progress", "finalizing", 90),
    ("completed", "complete", 100),
]
# The step whose work fails with each error code.
FAIL_STEP = {10: "initializing", 20: "downloading", 30: "unzipping", 40: "processing",
             50: "deploying", 60: "finalizing"}

GLOBAL_KNOBS = {
    "feature_disabled": False,      # every API route answers 403
    "rate_limit": None,             # {"times", "reset_ms", "path"?: exact or prefix*, "method"?}
    "errors": [],                   # injected [{method?, path, status, title?, detail?, errors?, times, headers?}]
    "step_ms": 1000,                # time between snapshots
    "close_after_ms": 30000,        # events stream server-side close
    "keepalive_ms": 15000,          # events stream keep-alive comment period
    "logs_close_after_ms": 60000,   # log tail server-side end
    "logs_keepalive_ms": 15000,
    "log_interval_ms": 500,         # one log event per interval
    "logs_resend_last": False,      # a log tail reconnect first re-sends the last event
    "default_knobs": {},            # per-deployment knobs for every new deployment
    "next_deploy": [],              # per-deployment knobs, consumed one per API create
    "max_upload_bytes": DEFAULT_MAX_UPLOAD,
    "strict_upload": True,          # PUT of something that is not a zip -> 400
    "validate_output": True,        # bundle entries outside output/ -> deployment error 40
    "upload_expired": False,        # signed URLs answer 403 "Request has expired"
    "upload_bad_signature": False,  # hand out URLs whose signature is wrong (403 echoes it)
    "missing_projects": [],         # project uuids answering 404
    "latency_ms": 0,
}
DEP_KNOBS = {"step_ms", "fail_code", "hostnames", "hold", "close_after_ms", "keepalive_ms"}


class ApiError(Exception):
    def __init__(self, status, title, detail=None, errors=None, headers=None):
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.headers = errors or {}, headers or {}

    def body(self):
        b = {"status": self.status, "title": self.title, "type": PROBLEM_TYPE,
             "errors": self.errors}
        if self.detail:
            b["detail"] = self.detail
        return b


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + ".%03dZ" % (
        int(epoch * 1000) % 1000)


class Deployment:
    def __init__(self, state, project, upload_uuid, knobs, bundle_code=None):
        self.uuid = str(uuid.uuid4())
        self.project = project
        self.upload_uuid = upload_uuid
        self.knobs = dict(knobs)
        self.created = time.monotonic()
        self.created_wall = time.time()
        self.bundle_code = bundle_code     # 30/40 from the uploaded bundle
        self.held_at = None                # index frozen by "hold"
        self.hold_started = None
        self.sent = set()                  # snapshot indices sent on any connection
        self.connections = 0
        self.snaps, self.dues = [], []
        self._build(self.created)
        if self.knobs.get("hold"):
            self.held_at = 1
            self.hold_started = time.monotonic()

    # -- script ---------------------------------------------------------
    def url_fields(self, final):
        host = "%s-%s.catalyst-preview.example" % (self.uuid[:8], self.project[:8])
        if self.knobs.get("hostnames"):
            return {"deployment_hostnames": [host] if final else []}
        return {"deployment_url": "https://" + host if final else None}

    def snapshot(self, status, step, progress, code=None, final=False):
        s = {"deployment_uuid": self.uuid, "deployment_status": status,
             "event": None if step is None else {"step": step, "progress": progress},
             "error": None if code is None else {"code": code}}
        s.update(self.url_fields(final and code is None))
        return s

    def _build(self, start, keep=0):
        step_ms = self.knobs.get("step_ms")
        if step_ms is None:
            step_ms = STATE.knobs["step_ms"]
        code = self.knobs.get("fail_code") or self.bundle_code
        snaps = []
        for status, step, prog in STEPS:
            if code is not None and code != 60 and status == "completed":
                break
            snaps.append(self.snapshot(status, step, prog, final=(status == "completed")))
            if code is not None and step == FAIL_STEP.get(code, "processing") and code != 60:
                snaps.append(self.snapshot("failed", step, prog, code=code))
                break
        if code == 60:
            snaps[-1] = self.snapshot("completed", "complete", 100, code=60, final=True)
        self.snaps = self.snaps[:keep] + snaps[keep:]
        base = self.dues[keep - 1] if keep else start
        self.dues = self.dues[:keep] + [base + (i - keep + (1 if keep else 0)) * step_ms / 1000.0
                                        for i in range(keep, len(self.snaps))]

    def index(self, now):
        n = bisect.bisect_right(self.dues, now)
        if self.held_at is not None:
            n = min(n, self.held_at)
        return max(0, n - 1)

    def current(self, now=None):
        return self.snaps[self.index(time.monotonic() if now is None else now)]

    def terminal(self, now=None):
        s = self.current(now)
        return s["deployment_status"] in ("completed", "failed") or s["error"] is not None

    def set_knobs(self, new):
        now = time.monotonic()
        idx = self.index(now)
        old_hold = bool(self.knobs.get("hold"))
        for k, v in new.items():
            if v is None:
                self.knobs.pop(k, None)
            else:
                self.knobs[k] = v
        if not self.terminal(now) and any(k in new for k in ("fail_code", "hostnames", "step_ms")):
            self._build(now, keep=idx + 1)
            # later snapshots restart their spacing from now
            step = (self.knobs.get("step_ms") or STATE.knobs["step_ms"]) / 1000.0
            for i in range(idx + 1, len(self.dues)):
                self.dues[i] = now + (i - idx) * step
        hold = bool(self.knobs.get("hold"))
        if hold and not old_hold:
            self.held_at = idx + 1
            self.hold_started = now
        elif old_hold and not hold:
            shift = now - (self.hold_started or now)
            for i in range(self.held_at or 0, len(self.dues)):
                self.dues[i] += shift
            self.held_at = None

    def finish(self, status, code=None):
        now = time.monotonic()
        idx = self.index(now)
        self.held_at = None
        self.knobs.pop("hold", None)
        cur = self.snaps[idx]
        ev = cur["event"] or {"step": "complete", "progress": 100}
        if status == "completed" and code is None:
            snap = self.snapshot("completed", "complete", 100, final=True)
        else:
            snap = self.snapshot(status, ev["step"], ev["progress"], code=code,
                                 final=(status == "completed"))
        self.snaps = self.snaps[:idx + 1] + [snap]
        self.dues = self.dues[:idx + 1] + [now]

    def to_json(self, now=None):
        now = time.monotonic() if now is None else now
        idx = self.index(now)
        return {"deployment_uuid": self.uuid, "project_uuid": self.project,
                "upload_uuid": self.upload_uuid, "createdAt": iso(self.created_wall),
                "knobs": self.knobs, "current": idx, "snapshot": self.snaps[idx],
                "terminal": self.terminal(now), "snapshots": self.snaps,
                "sentIndices": sorted(self.sent), "connections": self.connections}


class State(common.BaseState):
    max_recorded = 5000

    def reset_provider(self):
        self.knobs = json.loads(json.dumps(GLOBAL_KNOBS))
        self.deployments = {}
        self.order = []
        self.uploads = {}
        self.log_clock = {}       # project -> monotonic epoch of its log sequence
        self.log_last = {}        # project -> last log event k sent
        self.secret = os.urandom(16)


STATE = None


def in_progress(project):
    now = time.monotonic()
    return [d for d in STATE.deployments.values()
            if d.project == project and not d.terminal(now)]


def log_event(project, k, epoch_mono, epoch_wall):
    """Deterministic runtime-log event number k of a project."""
    ts = iso(epoch_wall + (time.monotonic() - epoch_mono))
    ev = {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, "%s/%d" % (project, k))),
          "project_uuid": project, "request": None, "logs": [], "exceptions": [],
          "timestamp": ts}
    kind = k % 4
    if kind == 0:
        ev["request"] = {"method": "GET", "url": "/products/%d" % k, "status_code": 200}
        ev["logs"] = [{"timestamp": ts, "level": "info",
                       "messages": ["rendered /products/%d seq=%d" % (k, k)]}]
    elif kind == 1:
        ev["logs"] = [{"timestamp": ts, "level": "debug", "messages": ["cache lookup seq=%d" % k]},
                      {"timestamp": ts, "level": "warn",
                       "messages": ["slow upstream 850ms seq=%d" % k]}]
    elif kind == 2:
        ev["request"] = {"method": "POST", "url": "/cart", "status_code": 500}
        ev["logs"] = [{"timestamp": ts, "level": "error",
                       "messages": ["checkout failed seq=%d" % k]}]
        ev["exceptions"] = [{"timestamp": ts, "name": "TypeError",
                             "message": "Cannot read properties of undefined seq=%d" % k}]
    else:
        ev["logs"] = [{"timestamp": ts, "level": "info",
                       "messages": ["heartbeat seq=%d" % k, "cache warm seq=%d" % k]}]
    return ev


class Handler(common.FakeHandler):
    server_version = "BigCommerceFake/1.0"
    log_name = "bigcommerce-fake"

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = lambda self: self._handle()

    # -- plumbing -------------------------------------------------------
    def _send_problem(self, e):
        self._send(e.status, json.dumps(e.body()).encode(), "application/problem+json",
                   e.headers)

    def _json_body(self):
        raw = self._read_sized(MAX_JSON_BODY)
        if raw is None:
            raise ApiError(413, "Payload Too Large")
        text = raw.decode("utf-8", "replace")
        if self.rec is not None:
            self.rec["body"] = text or None
        if not text.strip():
            return None
        try:
            body = json.loads(text)
        except ValueError:
            raise ApiError(400, "Bad Request", "The request body is not valid JSON.")
        if self.rec is not None:
            self.rec["body"] = body
        return body

    def _handle(self):
        url, path, parts = self._begin()
        try:
            if parts[:1] == ["_fake"]:
                return self._control(parts[1:])
            self._record(url, path, None)
            if parts[:1] == ["_upload"]:
                return self._upload(parts[1:])
            inj = self._injected(path)
            if inj:
                raise ApiError(int(inj.get("status", 503)), inj.get("title", "Service Unavailable"),
                               inj.get("detail"), inj.get("errors"), inj.get("headers"))
            if len(parts) < 3 or parts[0] != "stores" or parts[2] != "v3":
                raise ApiError(404, "Not Found", "No route for %s %s" % (self.command, path))
            self._auth()
            self._rate_limit(path)
            self._api(parts[1], parts[3:])
        except ApiError as e:
            if e.status >= 400 and self.command in ("POST", "PUT", "PATCH"):
                self.close_connection = True  # an unread body may follow
            self._send_problem(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _injected(self, path):
        with STATE.lock:
            return common.take_rule(STATE.knobs.get("errors"), self.command, path)

    def _auth(self):
        tok = self.headers.get("X-Auth-Token")
        if not tok or tok.strip() not in STATE.tokens:
            raise ApiError(401, "Unauthorized",
                           "Invalid X-Auth-Token" if tok else "Missing X-Auth-Token header")
        if STATE.knobs.get("feature_disabled"):
            raise ApiError(403, "Forbidden",
                           "Infrastructure Hosting is not enabled for this store.")

    def _rate_limit(self, path):
        with STATE.lock:
            rule = STATE.knobs.get("rate_limit")
            rule = common.take_rule([rule] if rule else [], self.command, path)
            if rule is None:
                return
            reset = int(rule.get("reset_ms", 1000))
        raise ApiError(429, "Too Many Requests", "Rate limit exceeded for this store.",
                       headers={"X-Rate-Limit-Time-Reset-Ms": str(reset),
                                "X-Rate-Limit-Time-Window-Ms": "30000",
                                "X-Rate-Limit-Requests-Left": "0",
                                "X-Rate-Limit-Requests-Quota": "150"})

    # -- provider API ---------------------------------------------------
    def _api(self, store, rest):
        m = self.command
        if rest == ["infrastructure", "deployments", "uploads"]:
            self._method("POST")
            return self._new_upload(store)
        if rest == ["infrastructure", "deployments"]:
            self._method("POST")
            return self._create_deployment()
        if len(rest) == 4 and rest[:2] == ["infrastructure", "deployments"] and rest[3] == "events":
            self._method("GET")
            return self._events(rest[2])
        if len(rest) == 4 and rest[:2] == ["infrastructure", "logs"] and rest[3] == "tail":
            self._method("GET")
            return self._logs(rest[2])
        if rest == ["infrastructure", "projects"]:
            self._method("GET")
            with STATE.lock:
                projects = sorted({d.project for d in STATE.deployments.values()})
            return self._send_json(200, {
                "data": [{"uuid": p, "name": "project " + p[:8]} for p in projects],
                "meta": {"cursor_pagination": {"count": len(projects), "per_page": 50}}})
        raise ApiError(404, "Not Found", "No route for %s %s" % (m, self.path))

    def _method(self, *allowed):
        if self.command not in allowed:
            raise ApiError(405, "Method Not Allowed", headers={"Allow": ", ".join(allowed)})

    def _new_upload(self, store):
        body = self._json_body()
        if body is not None and not isinstance(body, dict):
            raise ApiError(422, "Unprocessable Entity", errors={"body": "must be an object"})
        up = str(uuid.uuid4())
        with STATE.lock:
            sig = hmac.new(STATE.secret, up.encode(), hashlib.sha256).hexdigest()
            given = sig
            if STATE.knobs.get("upload_bad_signature"):
                given = hashlib.sha256(b"wrong" + sig.encode()).hexdigest()
            host = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]
            url = ("http://%s/_upload/%s?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=900"
                   "&X-Amz-SignedHeaders=content-type%%3Bhost&X-Amz-Signature=%s" % (host, up, given))
            STATE.uploads[up] = {"upload_uuid": up, "store": store, "signature": sig,
                                 "urlSignature": given,
                                 "createdAt": iso(time.time()), "received": False,
                                 "size": None, "contentType": None, "sha256": None,
                                 "isZip": None, "entries": [], "entryCount": 0,
                                 "allUnderOutput": None, "puts": 0}
        self._send_json(200, {"data": {"upload_url": url, "upload_uuid": up}, "meta": {}})

    def _create_deployment(self):
        body = self._json_body()
        if not isinstance(body, dict):
            raise ApiError(422, "Unprocessable Entity", "The request body must be an object.",
                           {"body": "must be a JSON object"})
        errs = {}
        up, project = body.get("upload_uuid"), body.get("project_uuid")
        if not isinstance(up, str) or not up:
            errs["upload_uuid"] = "upload_uuid is required"
        if not isinstance(project, str) or not project:
            errs["project_uuid"] = "project_uuid is required"
        env = body.get("environment_variables", [])
        if not isinstance(env, list):
            errs["environment_variables"] = "must be an array"
        else:
            for i, v in enumerate(env):
                if (not isinstance(v, dict) or v.get("type") not in ("plain_text", "secret")
                        or not isinstance(v.get("key"), str) or "value" not in v):
                    errs["environment_variables.%d" % i] = \
                        "must be {type: plain_text|secret, key, value}"
        if errs:
            raise ApiError(422, "The request payload is invalid.", errors=errs)
        with STATE.lock:
            upload = STATE.uploads.get(up)
            if upload is None:
                raise ApiError(422, "The request payload is invalid.",
                               errors={"upload_uuid": "upload %s not found" % up})
            if not upload["received"]:
                raise ApiError(422, "The request payload is invalid.",
                               errors={"upload_uuid": "no bundle was uploaded for this upload"})
            if project in (STATE.knobs.get("missing_projects") or []):
                raise ApiError(404, "Not Found", "Project %s not found." % project)
            if in_progress(project):
                raise ApiError(409, "Conflict",
                               "A deployment is already in progress for this project.")
            knobs = dict(STATE.knobs.get("default_knobs") or {})
            nd = STATE.knobs.get("next_deploy") or []
            if nd:
                knobs.update(nd.pop(0) or {})
            code = None
            if not upload["isZip"]:
                code = 30
            elif STATE.knobs.get("validate_output") and not upload["allUnderOutput"]:
                code = 40
            dep = Deployment(STATE, project, up, knobs, bundle_code=code)
            STATE.deployments[dep.uuid] = dep
            STATE.order.append(dep.uuid)
        self._send_json(201, {"data": {"deployment_uuid": dep.uuid}, "meta": {}})

    # -- the signed upload URL ----------------------------------------------
    def _s3_error(self, status, code, message, extra=""):
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                "<Message>%s</Message>%s</Error>" % (code, message, extra)).encode()
        self.close_connection = True
        self._send(status, body, "application/xml")

    def _upload(self, rest):
        if len(rest) != 1:
            return self._s3_error(404, "NoSuchKey", "The specified key does not exist.")
        up = rest[0]
        with STATE.lock:
            upload = STATE.uploads.get(up)
            expired = STATE.knobs.get("upload_expired")
            limit = int(STATE.knobs.get("max_upload_bytes") or DEFAULT_MAX_UPLOAD)
            strict = STATE.knobs.get("strict_upload")
        given = self.qs.get("X-Amz-Signature", "")
        if self.command != "PUT":
            return self._s3_error(405, "MethodNotAllowed",
                                  "The specified method is not allowed against this resource.")
        if upload is None or not hmac.compare_digest(given, upload["signature"]):
            # Like S3: the error echoes what the client sent, signature included.
            return self._s3_error(403, "SignatureDoesNotMatch",
                                  "The request signature we calculated does not match the "
                                  "signature you provided.",
                                  "<SignatureProvided>%s</SignatureProvided>" % given)
        if expired:
            return self._s3_error(403, "AccessDenied", "Request has expired")
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._s3_error(411, "MissingContentLength",
                                  "You must provide the Content-Length HTTP header.")
        n = int(self.headers.get("Content-Length") or 0)
        if n > limit:
            return self._s3_error(413, "EntityTooLarge",
                                  "Your proposed upload exceeds the maximum allowed size")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        data = self.rfile.read(n) if n > 0 else b""
        if ctype != "application/zip":
            return self._s3_error(400, "InvalidArgument",
                                  "Content-Type must be application/zip (it is signed)")
        is_zip = data[:4] in (b"PK\x03\x04", b"PK\x05\x06")
        names = []
        if is_zip:
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    names = z.namelist()
                    is_zip = z.testzip() is None
            except (zipfile.BadZipFile, ValueError, OSError, EOFError):
                is_zip = False
        if strict and not is_zip:
            return self._s3_error(400, "InvalidArgument", "The body is not a zip archive.")
        with STATE.lock:
            upload.update({"received": True, "size": len(data), "contentType": ctype,
                           "sha256": hashlib.sha256(data).hexdigest(), "isZip": is_zip,
                           "entries": names[:500], "entryCount": len(names),
                           "allUnderOutput": bool(names) and all(
                               x.startswith("output/") for x in names),
                           "puts": upload["puts"] + 1})
        self._send(200, b"", "application/xml",
                   {"ETag": '"%s"' % hashlib.md5(data).hexdigest()})

    # -- streams ----------------------------------------------------------
    def _open_stream(self, kind, key, conn):
        self._start_sse()
        return STATE.open_stream({"kind": kind, "key": key, "connection": conn,
                                  "openedAt": time.time(), "closedAt": None,
                                  "events_sent": 0, "keepalives_sent": 0, "reason": None})

    def _events(self, dep_id):
        with STATE.lock:
            dep = STATE.deployments.get(dep_id)
            if dep is None:
                raise ApiError(404, "Not Found", "Deployment %s not found." % dep_id)
            dep.connections += 1
            conn = dep.connections
            close_ms = dep.knobs.get("close_after_ms", STATE.knobs["close_after_ms"])
            ka_ms = dep.knobs.get("keepalive_ms", STATE.knobs["keepalive_ms"])
        rec, epoch = self._open_stream("events", dep_id, conn)
        opened = last_write = time.monotonic()
        last = None
        reason = "timeout"
        try:
            while True:
                if common.SHUTDOWN.is_set() or STATE.epoch != epoch:
                    reason = "server_shutdown"
                    break
                now = time.monotonic()
                with STATE.lock:
                    idx = dep.index(now)
                    # first the current snapshot; later every change in order
                    todo = [idx] if last is None else list(range(last + 1, idx + 1))
                    snaps = [(i, dep.snaps[i]) for i in todo]
                    terminal = dep.terminal(now)
                for i, s in snaps:
                    self._write(common.sse_frame(
                        json.dumps(s, separators=(",", ":")).encode(), "message"))
                    last_write = time.monotonic()
                    last = i
                    with STATE.lock:
                        rec["events_sent"] += 1
                        dep.sent.add(i)
                if terminal and last == idx:
                    reason = "terminal"
                    break
                if (now - opened) * 1000 >= close_ms:
                    reason = "timeout"   # the 30 s server-side close
                    break
                if ka_ms and (now - last_write) * 1000 >= ka_ms:
                    last_write = self._keep_alive(rec, "keepalives_sent")
                    continue
                wait = 0.05
                with STATE.lock:
                    if idx + 1 < len(dep.dues) and dep.held_at is None:
                        wait = min(wait, max(0.0, dep.dues[idx + 1] - now))
                wait = min(wait, max(0.0, opened + close_ms / 1000.0 - now))
                if self._client_gone(max(wait, 0.005)):
                    reason = "client_closed"
                    break
        except OSError:  # BrokenPipeError, ConnectionResetError, ...
            reason = "client_closed"
        self._end_stream(rec, epoch, reason)

    def _logs(self, project):
        with STATE.lock:
            if project in (STATE.knobs.get("missing_projects") or []):
                raise ApiError(404, "Not Found", "Project %s not found." % project)
            clock = STATE.log_clock.setdefault(project, (time.monotonic(), time.time()))
            close_ms = STATE.knobs["logs_close_after_ms"]
            ka_ms = STATE.knobs["logs_keepalive_ms"]
            interval = max(1, int(STATE.knobs["log_interval_ms"])) / 1000.0
            resend = STATE.knobs.get("logs_resend_last")
            last_k = STATE.log_last.get(project)
            conn = sum(1 for r in list(STATE.streams_closed) + list(STATE.streams_open.values())
                       if r["kind"] == "logs" and r["key"] == project) + 1
        rec, epoch = self._open_stream("logs", project, conn)
        opened = last_write = time.monotonic()
        # Live only: the first event sent is the next one due from now.
        k = int((opened - clock[0]) / interval) + 1
        reason = "timeout"
        try:
            if resend and last_k is not None:
                self._send_log(rec, project, last_k, clock)
                last_write = time.monotonic()
            while True:
                if common.SHUTDOWN.is_set() or STATE.epoch != epoch:
                    reason = "server_shutdown"
                    break
                now = time.monotonic()
                if now >= clock[0] + k * interval:
                    self._send_log(rec, project, k, clock)
                    last_write = time.monotonic()
                    k += 1
                    continue
                if (now - opened) * 1000 >= close_ms:
                    reason = "timeout"   # the 60 s end of a tail
                    break
                if ka_ms and (now - last_write) * 1000 >= ka_ms:
                    last_write = self._keep_alive(rec, "keepalives_sent")
                    continue
                wait = min(clock[0] + k * interval - now, opened + close_ms / 1000.0 - now,
                           0.05)
                if self._client_gone(max(wait, 0.005)):
                    reason = "client_closed"
                    break
        except OSError:  # BrokenPipeError, ConnectionResetError, ...
            reason = "client_closed"
        self._end_stream(rec, epoch, reason)

    def _send_log(self, rec, project, k, clock):
        ev = log_event(project, k, clock[0], clock[1])
        self._write(common.sse_frame(json.dumps(ev, separators=(",", ":")).encode(), "message"))
        with STATE.lock:
            rec["events_sent"] += 1
            rec.setdefault("seqs", []).append(k)
            STATE.log_last[project] = k

    # -- control API --------------------------------------------------------
    def _control(self, p):
        m = self.command
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return self._send_json(400, {"error": "control bodies must be JSON"})
        if not isinstance(body, dict):
            return self._send_json(400, {"error": "control bodies must be JSON objects"})
        ok = self._send_json
        with STATE.lock:
            if p == ["knobs"] and m in ("GET", "POST"):  # checks a body on GET too
                for k in body:
                    if k not in GLOBAL_KNOBS:
                        return ok(400, {"error": "unknown knob %r (known: %s)"
                                        % (k, ", ".join(sorted(GLOBAL_KNOBS)))})
                for k in ("default_knobs",):
                    if k in body and set(body[k] or {}) - DEP_KNOBS:
                        return ok(400, {"error": "unknown deployment knob in %s" % k})
                if "next_deploy" in body:
                    body["next_deploy"] = common.as_list(body["next_deploy"])
                if "errors" in body:
                    body["errors"] = [dict(e) for e in body["errors"] or []]
                if "rate_limit" in body and body["rate_limit"] is not None:
                    body["rate_limit"] = dict(body["rate_limit"])
                STATE.knobs.update(body)
                return ok(200, STATE.knobs)
            if self._control_common(p, body):
                return
            if p == ["uploads"] and m == "GET":
                return ok(200, list(STATE.uploads.values()))
            if p == ["deployments"] and m == "GET":
                return ok(200, [STATE.deployments[u].to_json() for u in STATE.order])
            if p == ["deployments"] and m == "POST":
                knobs = dict(STATE.knobs.get("default_knobs") or {})
                knobs.update(body.get("knobs") or {})
                if set(knobs) - DEP_KNOBS:
                    return ok(400, {"error": "unknown deployment knob"})
                dep = Deployment(STATE, body.get("project_uuid") or str(uuid.uuid4()),
                                 body.get("upload_uuid"), knobs)
                STATE.deployments[dep.uuid] = dep
                STATE.order.append(dep.uuid)
                return ok(201, dep.to_json())
            if len(p) in (2, 3) and p[0] == "deployments":
                dep = STATE.deployments.get(p[1])
                if dep is None:
                    return ok(404, {"error": "no deployment %s" % p[1]})
                if len(p) == 2 and m == "GET":
                    return ok(200, dep.to_json())
                if len(p) == 3 and p[2] == "knobs" and m == "POST":
                    if set(body) - DEP_KNOBS:
                        return ok(400, {"error": "unknown deployment knob"})
                    dep.set_knobs(body)
                    return ok(200, dep.to_json())
                if len(p) == 3 and p[2] == "finish" and m == "POST":
                    st = body.get("status", "completed")
                    if st not in ("completed", "failed"):
                        return ok(400, {"error": "status must be completed|failed"})
                    dep.finish(st, body.get("code"))
                    return ok(200, dep.to_json())
        return ok(404, {"error": "no control route for %s %s" % (m, self.path)})


def main(argv=None):
    global STATE
    args = common.arg_parser(
        "Fake BigCommerce Infrastructure Hosting API",
        "accepted X-Auth-Token (repeatable; default %s)" % DEFAULT_TOKEN).parse_args(argv)
    STATE = State(set(args.token or [DEFAULT_TOKEN]))
    return common.serve(args, Handler, STATE)


if __name__ == "__main__":
    sys.exit(main())
