#!/usr/bin/env python3
"""Fake Showly API server for deploy-mcp end-to-end tests (stdlib only).

    python3 tests/fakes/showly_fake.py [--port 0] [--host 127.0.0.1]
        [--token TOKEN ...] [--exit-on-stdin-eof] [--verbose]

Prints "PORT <n>" as the first stdout line once bound. See tests/fakes/README.md
for the API, the /_fake control API and the knobs.

Design: every deployment owns a *script*, an ordered list of SSE events, each
with a due time on a monotonic clock (creation time + cumulative delay_ms).
Both GET /deployments/{id} and the event stream derive the deployment's state
from the events that are due "now", so a deployment progresses by wall clock
whether or not anybody streams it, and the stream and GET always agree.
Knobs `hold` (freeze the timeline) and `hang` (withhold the terminal status)
stop the progress; /_fake/deployments/{id}/events appends events later.
"""

import base64
import bisect
import copy
import datetime as _dt
import hashlib
import json
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (tests/fakes/common.py)

TERMINAL = ("ready", "failed", "canceled")
STATUSES = ("queued", "building", "ready", "failed", "canceled")
DEFAULT_STEP_MS = 100
DEFAULT_OVERSIZE = 2 * 1024 * 1024  # > deploy-mcp's 1 MiB SSE line cap
MAX_BODY = 4 * 1024 * 1024

# Private-use placeholders replaced by raw bytes when rendering with
# invalid_utf8 (json.dumps(ensure_ascii=False) leaves them as UTF-8 bytes).
PH_FFFE = "\ue000"
PH_TRUNC = "\ue001"
PH_BYTES = ((PH_FFFE.encode(), b"\xff\xfe"), (PH_TRUNC.encode(), b"\xe2\x82"))

DEPLOYMENT_KNOBS = {
    # rendering / connection behaviour (take effect immediately)
    "ids": bool, "crlf": bool, "line_ending": str, "keepalive_ms": int,
    "multiline": bool, "drop_after": int, "drop_every": int,
    "drop_partial": bool, "invalid_utf8": bool, "retry_ms": int,
    "chunked": bool, "hang": bool, "hold": bool,
    # script shaping (generated scripts only)
    "slow_ms": int, "event_delay_ms": int, "burst_lines": int,
    "burst_events": int, "outcome": str, "fail": bool, "fail_message": str,
    "oversize": bool, "oversize_bytes": int,
    # one log event whose data spans many lines, each under the 1 MiB line
    # cap, together over deploy-mcp's 8 MiB event cap (raw, not JSON)
    "oversize_event_bytes": int,
}
SCRIPT_KNOBS = ("slow_ms", "event_delay_ms", "burst_lines", "burst_events",
                "outcome", "fail", "fail_message", "oversize", "oversize_bytes",
                "oversize_event_bytes")
GLOBAL_KNOBS = ("quota_exceeded", "next_deploy", "default_knobs",
                "approval_shape", "approval_url_base", "latency_ms", "errors",
                "missing_sites")
APPROVAL_SHAPES = ("details", "error", "data", "none")


class ApiError(Exception):
    def __init__(self, status, code, message, details=None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers or {}

    def body(self):
        err = {"code": self.code, "message": self.message}
        if self.details is not None:
            err["details"] = self.details
        return {"ok": False, "error": err}


def iso(ts):
    d = _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def parse_iso(s):
    try:
        d = _dt.datetime.fromisoformat(s.strip().replace("z", "Z"))
    except (ValueError, AttributeError):
        raise ValueError(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return d.timestamp()


def rand_id(prefix, n=16):
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


def slugify(s):
    out = "".join(c if c.isalnum() else "-" for c in s.lower()).strip("-")
    return out or "site"


def validate_knobs(knobs):
    if not isinstance(knobs, dict):
        raise ApiError(400, "invalid_knobs", "knobs must be an object")
    for k, v in knobs.items():
        if k not in DEPLOYMENT_KNOBS:
            raise ApiError(400, "invalid_knobs", "unknown deployment knob %r (known: %s)"
                           % (k, ", ".join(sorted(DEPLOYMENT_KNOBS))))
        t = DEPLOYMENT_KNOBS[k]
        if v is None:
            continue
        if t is int and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ApiError(400, "invalid_knobs", "knob %s must be a number" % k)
        if t is bool and not isinstance(v, bool):
            raise ApiError(400, "invalid_knobs", "knob %s must be a boolean" % k)
        if t is str and not isinstance(v, str):
            raise ApiError(400, "invalid_knobs", "knob %s must be a string" % k)
    if knobs.get("outcome") not in (None,) + TERMINAL:
        raise ApiError(400, "invalid_knobs", "outcome must be ready|failed|canceled")
    if knobs.get("line_ending") not in (None, "lf", "crlf", "cr"):
        raise ApiError(400, "invalid_knobs", "line_ending must be lf|crlf|cr")


def validate_script(script):
    if not isinstance(script, list):
        raise ApiError(400, "invalid_script", "script must be a list of events")
    out = []
    for i, ev in enumerate(script):
        if not isinstance(ev, dict):
            raise ApiError(400, "invalid_script", "script[%d] must be an object" % i)
        e = {"event": ev.get("event", "message"),
             "delay_ms": ev.get("delay_ms", DEFAULT_STEP_MS)}
        if not isinstance(e["event"], (str, type(None))):
            raise ApiError(400, "invalid_script", "script[%d].event must be a string" % i)
        if isinstance(e["delay_ms"], bool) or not isinstance(e["delay_ms"], (int, float)):
            raise ApiError(400, "invalid_script", "script[%d].delay_ms must be a number" % i)
        if "data_b64" in ev:
            try:
                e["raw"] = base64.b64decode(ev["data_b64"], validate=True)
            except Exception:
                raise ApiError(400, "invalid_script", "script[%d].data_b64 is not base64" % i)
        else:
            e["data"] = ev.get("data", {})
        if "id" in ev:
            e["id"] = str(ev["id"])
        if "terminal" in ev:
            e["terminal"] = bool(ev["terminal"])
        out.append(e)
    return out


def is_terminal_event(ev):
    if "terminal" in ev:
        return ev["terminal"]
    d = ev.get("data")
    return (ev.get("event") == "status" and isinstance(d, dict)
            and d.get("status") in TERMINAL)


class Deployment:
    def __init__(self, st, site_id, environment, branch=None, commit_sha=None,
                 knobs=None, script=None, status=None, dep_id=None,
                 created_at=None, source=None):
        self.id = dep_id or rand_id("dep_")
        self.site_id = site_id
        self.environment = environment
        self.branch = branch
        self.commit_sha = commit_sha
        self.source = source
        self.knobs = dict(knobs or {})
        self.seq = st.next_seq()
        self.created_mono = time.monotonic()
        self.created_wall = time.time()
        self.created_at = created_at if created_at is not None else self.created_wall
        self.name = "%s-%s" % (slugify(site_id)[:30], self.id[4:14])
        if environment == "production":
            self.url = "https://%s.showly.app" % slugify(site_id)
        else:
            self.url = "https://%s.preview.showly.app" % self.name
        self.explicit_script = script is not None
        self.connections = 0
        self.held_at = None  # due count frozen by `hold`
        self.events = []
        self.dues = []
        self._ft, self._ft_key = None, None
        evs = script if script is not None else self.generate_script()
        self._set_events(evs, self.created_mono)
        if status:
            self._start_at(status)
        if self.knobs.get("hold"):
            self.held_at = self.due_count_raw(time.monotonic())

    # -- script ---------------------------------------------------------
    def step_ms(self):
        k = self.knobs
        v = k.get("slow_ms") if k.get("slow_ms") is not None else k.get("event_delay_ms")
        return DEFAULT_STEP_MS if v is None else v

    def outcome(self):
        if self.knobs.get("outcome"):
            return self.knobs["outcome"]
        return "failed" if self.knobs.get("fail") else "ready"

    def generate_script(self):
        k, step = self.knobs, self.step_ms()
        sha7 = (self.commit_sha or "0000000")[:7]
        outcome = self.outcome()
        evs = [{"event": "status", "data": {"status": "building"}, "delay_ms": step}]

        def log(lines, delay=step):
            evs.append({"event": "log", "data": {"stream": "build", "lines": lines},
                        "delay_ms": delay})

        if k.get("burst_lines"):
            total = int(k["burst_lines"])
            m = max(1, min(int(k.get("burst_events") or 10), total))
            n = 0
            for j in range(m):
                cnt = total // m + (1 if j < total % m else 0)
                log(["burst line %d/%d" % (n + i + 1, total) for i in range(cnt)],
                    step if j == 0 else 0)
                n += cnt
        elif self.environment == "production":
            log(["Promoting %s to production" % (self.source or "preview")])
            log(["Propagating to edge network", "Production is live"])
        else:
            log(["Cloning repository (branch %s)" % (self.branch or "main"),
                 "HEAD is now at %s" % sha7])
            log(["Installing dependencies", "npm ci", "added 214 packages in 3s"])
            if k.get("oversize") or k.get("oversize_bytes"):
                size = int(k.get("oversize_bytes") or DEFAULT_OVERSIZE)
                head = "oversize line: "
                log([head + "x" * max(0, size - len(head))])
            if k.get("oversize_event_bytes"):
                size, line = int(k["oversize_event_bytes"]), 256 * 1024
                evs.append({"event": "log", "delay_ms": step,
                            "raw": b"\n".join([b"y" * (line - 1)] * max(1, size // line))})
            if outcome == "failed":
                log(["Building", "> next build",
                     "Error: Module not found: Can't resolve './missing'",
                     "Build failed with exit code 1"])
            else:
                log(["Building", "> next build", "Compiled successfully"])
                if outcome == "ready":
                    log(["Uploading build output", "Deploying to edge"])
        final = {"status": outcome}
        if outcome == "ready":
            final["previewUrl" if self.environment == "preview" else "url"] = self.url
        elif outcome == "failed":
            final["error"] = {"code": "build_failed", "message": k.get("fail_message") or
                              "Build failed: `npm run build` exited with code 1"}
        evs.append({"event": "status", "data": final, "delay_ms": step})
        return evs

    def _set_events(self, evs, start_mono, keep=0):
        """Keep the first `keep` events; schedule evs after them from start_mono."""
        self.truncate(keep)
        t = start_mono
        if keep:
            t = max(t, self.dues[-1])
        for ev in evs:
            t += max(0.0, float(ev.get("delay_ms", 0))) / 1000.0
            self.events.append(ev)
            self.dues.append(t)

    def _start_at(self, status):
        """Make every event up to the first status==`status` due at creation."""
        idx = None
        for i, ev in enumerate(self.events):
            d = ev.get("data")
            if ev.get("event") == "status" and isinstance(d, dict) and d.get("status") == status:
                idx = i
                break
        if idx is None:
            if status == "queued":
                return
            ev = {"event": "status", "data": {"status": status}, "delay_ms": 0}
            if status in TERMINAL:
                if status == "ready":
                    ev["data"]["previewUrl" if self.environment == "preview" else "url"] = self.url
                if status == "failed":
                    ev["data"]["error"] = {"code": "build_failed", "message": "Build failed"}
                idx = len(self.events)
                self.events = self.events + [ev]
                self.dues = self.dues + [self.created_mono]
            else:
                self.events = [ev] + self.events
                self.dues = [self.created_mono] + self.dues
                idx = 0
        rest = self.events[idx + 1:]
        if self.events[idx:idx + 1] and is_terminal_event(self.events[idx]):
            rest = []  # nothing after a terminal status
        head = self.events[:idx + 1]
        self.events, self.dues = head, [self.created_mono] * len(head)
        self._set_events(rest, self.created_mono, keep=len(head))

    def first_terminal(self):
        key = (id(self.events), len(self.events))
        if self._ft_key != key:
            self._ft = None
            for i, ev in enumerate(self.events):
                if is_terminal_event(ev):
                    self._ft = i
                    break
            self._ft_key = key
        return self._ft

    def truncate(self, n):
        self.events, self.dues = self.events[:n], self.dues[:n]

    def due_count_raw(self, now):
        return bisect.bisect_right(self.dues, now)

    def due_count(self, now):
        n = self.due_count_raw(now)
        if self.held_at is not None:
            n = min(n, self.held_at)
        ft = self.first_terminal()
        if ft is not None:
            if self.knobs.get("hang"):
                n = min(n, ft)
            else:
                n = min(n, ft + 1)  # nothing after a terminal status is ever due
        return n

    def due_time(self, i):
        """Monotonic time at which event i becomes due, or None if it never will
        (as things stand: held, withheld by hang, after a terminal, or absent)."""
        if i >= len(self.events):
            return None
        if self.held_at is not None and i >= self.held_at:
            return None
        ft = self.first_terminal()
        if ft is not None and (i > ft or (i == ft and self.knobs.get("hang"))):
            return None
        return self.dues[i]

    def update_knobs(self, new):
        now = time.monotonic()
        dc = self.due_count(now)
        old_hold = bool(self.knobs.get("hold"))
        was_terminal = self.state(now)[0] in TERMINAL
        self.knobs.update(new)
        for k, v in list(self.knobs.items()):
            if v is None:
                del self.knobs[k]
        if (not self.explicit_script and not was_terminal
                and any(k in new for k in SCRIPT_KNOBS)):
            fresh = self.generate_script()
            pending = fresh[dc:]
            if not any(is_terminal_event(e) for e in pending):
                pending = [fresh[-1]]
            self._set_events(pending, now, keep=dc)
        new_hold = bool(self.knobs.get("hold"))
        if new_hold and not old_hold:
            self.held_at = dc
        elif old_hold and not new_hold and self.held_at is not None:
            keep = self.held_at
            self.held_at = None
            self._set_events(self.events[keep:], now, keep=keep)

    def append_events(self, evs):
        now = time.monotonic()
        keep = len(self.events)
        self.truncate(keep)  # fresh lists: invalidates the first_terminal cache
        base = max(now, self.dues[-1]) if self.dues else now
        for ev in evs:
            base += max(0.0, float(ev.get("delay_ms", 0))) / 1000.0
            self.events.append(ev)
            self.dues.append(base)
        return keep

    # -- state ----------------------------------------------------------
    def wall_at(self, i):
        return self.created_at + (self.dues[i] - self.created_mono)

    def state(self, now):
        n = self.due_count(now)
        for i in range(n - 1, -1, -1):
            ev = self.events[i]
            d = ev.get("data")
            if ev.get("event") == "status" and isinstance(d, dict) and d.get("status"):
                return d["status"], d, i
        return "queued", None, None

    def to_json(self, now=None):
        now = time.monotonic() if now is None else now
        status, data, idx = self.state(now)
        out = {"id": self.id, "siteId": self.site_id, "environment": self.environment,
               "status": status, "createdAt": iso(self.created_at),
               "branch": self.branch, "commitSha": self.commit_sha}
        if self.source:
            out["sourceDeploymentId"] = self.source
        if idx is not None:
            out["updatedAt"] = iso(self.wall_at(idx))
        if status == "ready":
            if self.environment == "preview":
                out["previewUrl"] = (data or {}).get("previewUrl") or self.url
            else:
                out["url"] = (data or {}).get("url") or self.url
        if status == "failed":
            err = (data or {}).get("error")
            out["error"] = err if isinstance(err, dict) else {
                "code": "build_failed", "message": "Build failed"}
        return out

    def internal_json(self, now):
        out = self.to_json(now)
        out["_fake"] = {
            "knobs": self.knobs, "dueCount": self.due_count(now),
            "eventCount": len(self.events), "connections": self.connections,
            "held": self.held_at is not None,
            "script": [{k: (v if k != "raw" else base64.b64encode(v).decode())
                        for k, v in ev.items()} | {"dueAt": iso(self.wall_at(i))}
                       for i, ev in enumerate(self.events[:200])],
        }
        return out


class State(common.BaseState):
    def reset_provider(self):
        self.deployments = {}
        self.idem = {}        # key -> (fingerprint, response status, body)
        self.approvals = {}
        self.decision_calls = []
        self.knobs = {"quota_exceeded": False, "next_deploy": [], "default_knobs": {},
                      "approval_shape": "details",
                      "approval_url_base": "https://app.showly.ai/approvals/",
                      "latency_ms": 0, "errors": [], "missing_sites": ["site_missing"]}

    def add_deployment(self, dep):
        self.deployments[dep.id] = dep
        return dep


STATE = None


def b64url(obj):
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64url(s):
    s = s + "=" * (-len(s) % 4)
    return json.loads(base64.urlsafe_b64decode(s.encode()).decode())


class Handler(common.FakeHandler):
    server_version = "ShowlyFake/1.0"
    log_name = "showly-fake"

    # -- plumbing -------------------------------------------------------
    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    break
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ApiError(413, "payload_too_large", "request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(16)
            return b"".join(chunks)
        raw = self._read_sized(MAX_BODY)
        if raw is None:
            raise ApiError(413, "payload_too_large", "request body too large")
        return raw

    def _handle(self):
        url, path, parts = self._begin()
        raw = self._read_request(self._read_body, ApiError, ApiError.body,
                                 ApiError(400, "invalid_request", "bad body").body())
        if raw is None:
            return
        text = raw.decode("utf-8", "replace")
        self.json, self.json_ok = common.parse_json_text(text)
        self.raw_body = raw
        is_fake = path.startswith("/_fake/") or path == "/_fake"
        if not is_fake:
            self._record(url, path,
                         self.json if (self.json_ok and text.strip()) else (text or None))
        try:
            if is_fake:
                self._control(parts)
                return
            inj = self._injected_error(path)
            is_stream = len(parts) == 3 and parts[0] == "deployments" and parts[2] == "events"
            if inj and (inj.get("mode", "before") == "before" or is_stream):
                self._send_injected(inj)
                return
            try:
                self._auth()
                status, obj, headers = self._api(parts)
            except ApiError as e:
                status, obj, headers = e.status, e.body(), e.headers
            if status is None:
                return  # streamed
            if inj:  # mode "after"/"close": the request took effect, the reply is lost
                self._send_injected(inj)
                return
            self._send_json(status, obj, headers)
        except ApiError as e:
            self._send_json(e.status, e.body(), e.headers)

    def _injected_error(self, path):
        with STATE.lock:
            return common.take_rule(STATE.knobs.get("errors"), self.command, path)

    def _send_injected(self, rule):
        if rule.get("mode") == "close":
            self._close_unanswered()
            return
        status = int(rule.get("status", 503))
        headers = {}
        if rule.get("retryAfter") is not None:
            headers["Retry-After"] = str(rule["retryAfter"])
        self._send_json(status, {"ok": False, "error": {
            "code": rule.get("code", "service_unavailable"),
            "message": rule.get("message", "injected error")}}, headers)

    def _auth(self):
        h = self.headers.get("Authorization") or ""
        scheme, _, tok = h.partition(" ")
        if scheme.lower() != "bearer" or tok.strip() not in STATE.tokens:
            raise ApiError(401, "unauthorized",
                           "Missing or invalid API token" if h else "Missing Authorization header")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = lambda self: self._handle()

    # -- provider API ---------------------------------------------------
    def _api(self, parts):
        m = self.command
        if len(parts) == 3 and parts[0] == "sites" and parts[2] == "deploy":
            self._method("POST")
            return self._create(parts[1])
        if len(parts) == 3 and parts[0] == "sites" and parts[2] == "deployments":
            self._method("GET")
            self._check_site(parts[1])
            return self._list(parts[1])
        if parts == ["deployments"]:
            self._method("GET")
            return self._list(None)
        if len(parts) == 2 and parts[0] == "deployments":
            self._method("GET")
            with STATE.lock:
                return 200, {"ok": True, "data": self._dep(parts[1]).to_json()}, None
        if len(parts) == 3 and parts[0] == "deployments" and parts[2] == "events":
            self._method("GET")
            self._events(parts[1])
            return None, None, None
        if len(parts) == 3 and parts[0] == "approvals" and parts[2] == "decision":
            self._method("POST")
            return self._decision(parts[1])
        raise ApiError(404, "not_found", "No route for %s %s" % (m, self.path))

    def _method(self, *allowed):
        if self.command not in allowed:
            raise ApiError(405, "method_not_allowed", "Use %s" % "/".join(allowed),
                           headers={"Allow": ", ".join(allowed)})

    def _check_site(self, site_id):
        if site_id in (STATE.knobs.get("missing_sites") or []):
            raise ApiError(404, "site_not_found", "Site %s not found" % site_id)

    def _dep(self, dep_id):
        dep = STATE.deployments.get(dep_id)
        if dep is None:
            raise ApiError(404, "deployment_not_found", "Deployment %s not found" % dep_id)
        return dep

    def _create(self, site_id):
        with STATE.lock:
            self._check_site(site_id)
            key = self.headers.get("Idempotency-Key")
            if not key or not key.strip():
                raise ApiError(428, "idempotency_key_required",
                               "The Idempotency-Key header is required for deploys")
            if not self.json_ok:
                raise ApiError(400, "invalid_json", "Request body is not valid JSON")
            body = self.json if self.json is not None else {}
            if not isinstance(body, dict):
                raise ApiError(400, "invalid_request", "Request body must be a JSON object")
            fp = hashlib.sha256((site_id + "\0" + json.dumps(body, sort_keys=True))
                                .encode()).hexdigest()
            prev = STATE.idem.get(key)
            if prev is not None:
                if prev[0] != fp:
                    raise ApiError(409, "idempotency_conflict",
                                   "Idempotency-Key %s was already used with a different "
                                   "request body" % key)
                status, obj, dep_id = prev[1], copy.deepcopy(prev[2]), prev[3]
                if dep_id and dep_id in STATE.deployments and status == 202:
                    obj["data"] = STATE.deployments[dep_id].to_json()
                return status, obj, {"Idempotent-Replayed": "true"}
            env = body.get("environment", "preview")
            for f in ("commitSha", "branch", "sourceDeploymentId", "notes"):
                if body.get(f) is not None and not isinstance(body[f], str):
                    raise ApiError(400, "invalid_request", "%s must be a string" % f)
            if env not in ("preview", "production"):
                raise ApiError(400, "invalid_request",
                               "environment must be \"preview\" or \"production\"")
            if STATE.knobs.get("quota_exceeded"):
                # Deliberately no Retry-After: the quota does not clear on a timer.
                raise ApiError(429, "build_quota_exceeded",
                               "Build quota exceeded for this billing period. Upgrade the "
                               "plan or wait for the next period; retrying will not help.")
            if env == "production":
                status, obj = self._production(site_id, body)
                STATE.idem[key] = (fp, status, copy.deepcopy(obj), None)
                return status, obj, None
            nd = STATE.knobs.get("next_deploy") or []
            spec = nd.pop(0) if nd else {}
            knobs = dict(STATE.knobs.get("default_knobs") or {})
            knobs.update(spec.get("knobs") or {})
            dep = STATE.add_deployment(Deployment(
                STATE, site_id, "preview", branch=body.get("branch"),
                commit_sha=body.get("commitSha"), knobs=knobs,
                script=spec.get("script"), status=spec.get("status")))
            obj = {"ok": True, "data": dep.to_json()}
            STATE.idem[key] = (fp, 202, copy.deepcopy(obj), dep.id)
            return 202, obj, None

    def _production(self, site_id, body):
        src_id = body.get("sourceDeploymentId")
        if not src_id:
            raise ApiError(428, "source_deployment_required",
                           "Production publishes need sourceDeploymentId (a ready preview)")
        src = self._dep(src_id)
        if src.site_id != site_id:
            raise ApiError(409, "source_not_ready",
                           "Deployment %s belongs to another site" % src_id)
        st = src.state(time.monotonic())[0]
        if src.environment != "preview" or st != "ready":
            raise ApiError(409, "source_not_ready",
                           "Source deployment %s is not a ready preview (environment %s, "
                           "status %s)" % (src_id, src.environment, st))
        apr = rand_id("apr_")
        url = (STATE.knobs.get("approval_url_base") or "") + apr
        now = time.time()
        STATE.approvals[apr] = {
            "requestId": apr, "siteId": site_id, "sourceDeploymentId": src_id,
            "status": "pending", "webApprovalUrl": url, "createdAt": iso(now),
            "notes": body.get("notes"), "requestedBy": "token",
            "productionDeploymentId": None, "decidedAt": None}
        info = {"requestId": apr, "webApprovalUrl": url, "sourceDeploymentId": src_id,
                "siteId": site_id, "status": "pending",
                "expiresAt": iso(now + 7 * 86400)}
        msg = ("Publishing to production requires approval by a human with step-up MFA. "
               "Open the approval URL in a browser.")
        shape = STATE.knobs.get("approval_shape") or "details"
        if shape == "data":
            return 202, {"ok": True, "data": info}
        err = {"code": "approval_required", "message": msg}
        if shape == "details":
            err["details"] = info
        elif shape == "error":
            err.update({k: info[k] for k in ("requestId", "webApprovalUrl", "sourceDeploymentId")})
        return 428, {"ok": False, "error": err}

    def _decision(self, apr_id):
        with STATE.lock:
            call = {"requestId": apr_id, "body": self.json, "ts": time.time(),
                    "headers": dict((k.lower(), v) for k, v in self.headers.items()),
                    "status": 403}
            STATE.decision_calls.append(call)
            if apr_id not in STATE.approvals:
                call["status"] = 404
                raise ApiError(404, "approval_not_found", "Approval request %s not found" % apr_id)
            raise ApiError(403, "self_approval_forbidden",
                           "The requester of an approval may not decide it; a different "
                           "human must approve in the web app with step-up MFA")

    def _list(self, site_id):
        q = self.qs
        if site_id is None:
            site_id = q.get("siteId") or None
        env = q.get("environment") or None
        status = q.get("status") or None
        if env is not None and env not in ("preview", "production"):
            raise ApiError(400, "invalid_parameter", "environment must be preview|production")
        if status is not None and status not in STATUSES:
            raise ApiError(400, "invalid_parameter", "status must be one of " + "|".join(STATUSES))
        since = until = None
        try:
            if q.get("since"):
                since = parse_iso(q["since"])
            if q.get("until"):
                until = parse_iso(q["until"])
        except ValueError:
            raise ApiError(400, "invalid_parameter", "since/until must be ISO 8601 timestamps")
        limit = 20
        if q.get("limit"):
            try:
                limit = int(q["limit"])
            except ValueError:
                raise ApiError(400, "invalid_parameter", "limit must be an integer")
            if limit < 1:
                raise ApiError(400, "invalid_parameter", "limit must be >= 1")
            limit = min(limit, 100)
        filt = hashlib.sha256(json.dumps([site_id, env, status, q.get("since"), q.get("until")])
                              .encode()).hexdigest()[:12]
        after = None
        if q.get("cursor"):
            try:
                c = unb64url(q["cursor"])
                after = (float(c["t"]), int(c["s"]))
                if c.get("f") != filt:
                    raise ValueError("filter mismatch")
            except Exception:
                raise ApiError(400, "invalid_cursor", "The cursor is invalid, expired or was "
                               "issued for different filters")
        now = time.monotonic()
        with STATE.lock:
            deps = sorted(STATE.deployments.values(),
                          key=lambda d: (d.created_at, d.seq), reverse=True)
            items = []
            more = False
            for d in deps:
                if after is not None and (d.created_at, d.seq) >= after:
                    continue
                if site_id and d.site_id != site_id:
                    continue
                if env and d.environment != env:
                    continue
                if since is not None and d.created_at < since:
                    continue
                if until is not None and d.created_at > until:
                    continue
                j = d.to_json(now)
                if status and j["status"] != status:
                    continue
                if len(items) == limit:
                    more = True
                    break
                items.append((d, j))
        nxt = None
        if more:
            last = items[-1][0]
            nxt = b64url({"t": last.created_at, "s": last.seq, "f": filt})
        return 200, {"ok": True, "data": {"items": [j for _, j in items],
                                          "pageInfo": {"nextCursor": nxt, "hasMore": more}}}, None

    # -- SSE --------------------------------------------------------------
    def _events(self, dep_id):
        accept = self.headers.get("Accept")
        if accept and not any(a in accept for a in ("text/event-stream", "*/*", "text/*")):
            raise ApiError(406, "not_acceptable", "This endpoint serves text/event-stream")
        lei = self.headers.get("Last-Event-ID")
        with STATE.lock:
            dep = self._dep(dep_id)
            k = dict(dep.knobs)
            conn_index = dep.connections
            dep.connections += 1
            ids = k.get("ids", True)
            start = 0
            if ids and lei is not None and lei.strip():
                lei = lei.strip()
                start = None
                for i, ev in enumerate(dep.events):
                    if ev.get("id", str(i + 1)) == lei:
                        start = i + 1
                        break
                if start is None:
                    start = int(lei) if lei.isdigit() else 0
            rec, epoch = STATE.open_stream({
                "deploymentId": dep_id, "connection": conn_index + 1,
                "openedAt": time.time(), "closedAt": None,
                "requestLastEventId": self.headers.get("Last-Event-ID"),
                "lastEventId": None, "events_sent": 0, "keepalives_sent": 0, "reason": None})
        le = k.get("line_ending") or ("crlf" if k.get("crlf") else "lf")
        eol = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}[le]
        chunked = bool(k.get("chunked"))
        reason = "error"

        def write(b):
            if chunked:
                b = b"%x\r\n" % len(b) + b + b"\r\n"
            self._write(b)

        try:
            self._start_sse([("X-Accel-Buffering", "no")]
                            + ([("Transfer-Encoding", "chunked")] if chunked else []))
            if k.get("retry_ms") is not None:
                write(b"retry: %d" % int(k["retry_ms"]) + eol + eol)
            i, sent_here = start, 0
            last_write = time.monotonic()
            while True:
                if STATE.epoch != epoch:
                    reason = "reset"
                    break
                if common.SHUTDOWN.is_set():
                    reason = "server_shutdown"
                    break
                now = time.monotonic()
                with STATE.lock:
                    k = dict(dep.knobs)
                    dc = dep.due_count(now)
                    nd = dep.due_time(i)
                    ev = dep.events[i] if i < len(dep.events) else None
                    due_wall = dep.wall_at(i) if ev is not None else None
                    ft = dep.first_terminal()
                drop = k.get("drop_every") or (k.get("drop_after") if conn_index == 0 else None)
                if drop and sent_here >= int(drop):
                    if k.get("drop_partial") and ev is not None:
                        b = self._render(ev, i, k, eol, due_wall)
                        write(b[:max(1, len(b) // 2)])
                    reason = "dropped"
                    chunked = False  # no terminating chunk: an abrupt close
                    break
                if i < dc:
                    write(self._render(ev, i, k, eol, due_wall))
                    sent_here += 1
                    last_write = time.monotonic()
                    with STATE.lock:
                        rec["events_sent"] += 1
                        if k.get("ids", True):
                            rec["lastEventId"] = ev.get("id", str(i + 1))
                    i += 1
                    if is_terminal_event(ev):
                        reason = "terminal"
                        break
                    continue
                if ft is not None and not k.get("hang") and i > ft and dc > ft:
                    reason = "terminal"  # resumed after the terminal event
                    break
                wait = 0.2
                if nd is not None:
                    wait = min(wait, nd - now)
                ka = k.get("keepalive_ms")
                if ka is None and k.get("hang"):
                    ka = 500
                if ka:
                    wait = min(wait, last_write + ka / 1000.0 - now)
                    if wait <= 0:
                        last_write = self._keep_alive(rec, "keepalives_sent", write, eol)
                        continue
                if self._client_gone(wait):
                    reason = "client_closed"
                    break
            if chunked and reason == "terminal":
                self._write(b"0\r\n\r\n")
        except OSError:  # BrokenPipeError, ConnectionResetError, ...
            reason = "client_closed"
        finally:
            self._end_stream(rec, epoch, reason)

    @staticmethod
    def _render(ev, i, k, eol, due_wall):
        event_id = ev.get("id", str(i + 1)) if k.get("ids", True) else None
        if "raw" in ev:
            data = ev["raw"]
        else:
            d = ev.get("data")
            if ev.get("event") == "status" and isinstance(d, dict) and "at" not in d:
                d = dict(d, at=iso(due_wall))
            bad = (k.get("invalid_utf8") and ev.get("event") == "log" and isinstance(d, dict)
                   and isinstance(d.get("lines"), list) and d["lines"])
            if bad:
                ls = list(d["lines"])
                ls[0] = str(ls[0]) + " " + PH_FFFE
                ls[-1] = str(ls[-1]) + " " + PH_TRUNC
                d = dict(d, lines=ls)
            if k.get("multiline"):
                data = json.dumps(d, ensure_ascii=False, indent=1).encode()
            else:
                data = json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode()
            if bad:
                for ph, raw in PH_BYTES:
                    data = data.replace(ph, raw)
        return common.sse_frame(data, ev.get("event") or None, event_id, eol)

    # -- control API --------------------------------------------------------
    def _control(self, parts):
        """Control API: bare JSON responses (no envelope); errors use the envelope."""
        m = self.command
        p = parts[1:]
        body = self.json if isinstance(self.json, dict) else {}
        if (self.json is not None and not isinstance(self.json, dict)) or not self.json_ok:
            raise ApiError(400, "invalid_json", "control bodies must be JSON objects")
        ok = self._send_json
        with STATE.lock:
            if self._control_common(p, body):
                return
            if p == ["approvals"] and m == "GET":
                return ok(200, {"approvals": list(STATE.approvals.values()),
                                "decisionCalls": STATE.decision_calls})
            if len(p) == 3 and p[0] == "approvals" and p[2] == "decide" and m == "POST":
                return ok(200, self._fake_decide(p[1], body))
            if p == ["deployments"] and m == "POST":
                dep = self._fake_create(body)
                return ok(201, dep.internal_json(time.monotonic()))
            if p == ["deployments"] and m == "GET":
                now = time.monotonic()
                return ok(200, [d.to_json(now) for d in
                                sorted(STATE.deployments.values(), key=lambda d: d.seq)])
            if len(p) in (2, 3) and p[0] == "deployments":
                dep = self._dep(p[1])
                if len(p) == 2 and m == "GET":
                    return ok(200, dep.internal_json(time.monotonic()))
                if len(p) == 3 and p[2] == "knobs" and m == "POST":
                    validate_knobs(body)
                    dep.update_knobs(body)
                    return ok(200, dep.internal_json(time.monotonic()))
                if len(p) == 3 and p[2] == "events" and m == "POST":
                    dep.append_events(validate_script(body.get("events", [])))
                    return ok(200, dep.internal_json(time.monotonic()))
                if len(p) == 3 and p[2] == "finish" and m == "POST":
                    st = body.get("status", "ready")
                    if st not in TERMINAL:
                        raise ApiError(400, "invalid_request", "status must be terminal")
                    data = {"status": st}
                    if st == "ready":
                        data["previewUrl" if dep.environment == "preview" else "url"] = dep.url
                    if st == "failed":
                        data["error"] = body.get("error") or {
                            "code": "build_failed", "message": "Build failed"}
                    # keep what is already due (hang still withholding any terminal),
                    # drop the rest, then append the new terminal status
                    now = time.monotonic()
                    dc = dep.due_count(now)
                    dep.held_at = None
                    dep.knobs.pop("hold", None)
                    dep.knobs.pop("hang", None)
                    dep.truncate(dc)
                    dep.append_events([{"event": "status", "data": data,
                                        "delay_ms": body.get("delay_ms", 0)}])
                    return ok(200, dep.internal_json(now))
        raise ApiError(404, "not_found", "No control route for %s %s" % (m, self.path))

    def _set_global(self, body):
        for k, v in body.items():
            if k not in GLOBAL_KNOBS:
                raise ApiError(400, "invalid_knobs", "unknown global knob %r (known: %s)"
                               % (k, ", ".join(GLOBAL_KNOBS)))
        if "approval_shape" in body and body["approval_shape"] not in APPROVAL_SHAPES:
            raise ApiError(400, "invalid_knobs", "approval_shape must be one of "
                           + "|".join(APPROVAL_SHAPES))
        if "default_knobs" in body:
            validate_knobs(body["default_knobs"] or {})
            body["default_knobs"] = body["default_knobs"] or {}
        if "next_deploy" in body:
            specs = []
            for spec in common.as_list(body["next_deploy"]):
                if not isinstance(spec, dict):
                    raise ApiError(400, "invalid_knobs", "next_deploy entries must be objects")
                s = {"knobs": spec.get("knobs") or {}, "status": spec.get("status")}
                validate_knobs(s["knobs"])
                if s["status"] is not None and s["status"] not in STATUSES:
                    raise ApiError(400, "invalid_knobs", "bad status")
                if spec.get("script") is not None:
                    s["script"] = validate_script(spec["script"])
                specs.append(s)
            body["next_deploy"] = specs
        if "errors" in body:
            body["errors"] = common.rule_list(body["errors"])
            if body["errors"] is None:
                raise ApiError(400, "invalid_knobs", "errors must be a list of objects")
        STATE.knobs.update(body)

    def _fake_create(self, body):
        site = body.get("siteId") or "site_test"
        env = body.get("environment", "preview")
        if env not in ("preview", "production"):
            raise ApiError(400, "invalid_request", "environment must be preview|production")
        status = body.get("status")
        if status is not None and status not in STATUSES:
            raise ApiError(400, "invalid_request", "bad status")
        knobs = dict(STATE.knobs.get("default_knobs") or {})
        knobs.update(body.get("knobs") or {})
        validate_knobs(knobs)
        script = validate_script(body["script"]) if body.get("script") is not None else None
        created = None
        if body.get("createdAt"):
            try:
                created = parse_iso(body["createdAt"])
            except ValueError:
                raise ApiError(400, "invalid_request", "createdAt must be ISO 8601")
        dep_id = body.get("id")
        if dep_id and dep_id in STATE.deployments:
            raise ApiError(409, "conflict", "deployment %s exists" % dep_id)
        return STATE.add_deployment(Deployment(
            STATE, site, env, branch=body.get("branch"), commit_sha=body.get("commitSha"),
            knobs=knobs, script=script, status=status, dep_id=dep_id, created_at=created,
            source=body.get("sourceDeploymentId")))

    def _fake_decide(self, apr_id, body):
        apr = STATE.approvals.get(apr_id)
        if apr is None:
            raise ApiError(404, "approval_not_found", "Approval request %s not found" % apr_id)
        if apr["status"] != "pending":
            raise ApiError(409, "already_decided", "Approval request already %s" % apr["status"])
        decision = body.get("decision")
        if decision not in ("approve", "reject"):
            raise ApiError(400, "invalid_request", "decision must be approve|reject")
        apr["decidedAt"] = iso(time.time())
        apr["notes"] = body.get("notes", apr.get("notes"))
        if decision == "reject":
            apr["status"] = "rejected"
        else:
            apr["status"] = "approved"
            dep = STATE.add_deployment(Deployment(
                STATE, apr["siteId"], "production", source=apr["sourceDeploymentId"],
                knobs=dict(STATE.knobs.get("default_knobs") or {})))
            apr["productionDeploymentId"] = dep.id
        return apr


def main(argv=None):
    global STATE
    args = common.arg_parser(
        "Fake Showly API for deploy-mcp tests",
        "accepted bearer token (repeatable; default sk_live_faketoken)").parse_args(argv)
    STATE = State(set(args.token or ["sk_live_faketoken"]))
    return common.serve(args, Handler, STATE)


if __name__ == "__main__":
    sys.exit(main())
