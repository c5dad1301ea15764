#!/usr/bin/env python3
"""Fake Bluelink Deploy Engine (HTTP API v1) for deploy-mcp end-to-end tests
(stdlib only).

    python3 tests/fakes/bluelink_fake.py [--port 0] [--host 127.0.0.1]
        [--token JWT ...] [--api-key KEY ...] [--key-id ID --secret S ...]
        [--exit-on-stdin-eof] [--verbose]

Prints "PORT <n>" as the first stdout line once bound. See tests/fakes/README.md
("Bluelink") for the API, the /_fake control API and the knobs.

Design: every change set and every blueprint instance owns an event
*channel*, an ordered list of events {id (UUIDv7), type, data, due, wall, end}
scheduled on a monotonic clock. GETs and streams derive state from the events
due "now", so work progresses by wall clock whether or not anybody streams it.
Streams resume strictly after Last-Event-ID; without it they replay the events
of the last 300 s (by wall time), as the real engine does. Instance channels
keep every deployment ever made on the instance, so an old deployment's events
are replayed to a client that does not pass the POST's lastEventId.
"""

import base64
import bisect
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (tests/fakes/common.py)

SKEW_S = 300                  # Bluelink-Signature-V1 clock skew
REPLAY_WINDOW_S = 300         # replay without Last-Event-ID
DEFAULT_STEP_MS = 100
MAX_BODY = 4 * 1024 * 1024
DEFAULT_TOKEN = "bl_fake_jwt_token"
DEFAULT_API_KEY = "bl_fake_api_key"
DEFAULT_KEY_ID = "deploy-mcp"
DEFAULT_SECRET = "bl_fake_signing_secret"
FILE_SCHEMES = ("file", "s3", "gcs", "azureblob", "https")

INSTANCE_STATUS = [
    "PREPARING", "DEPLOYING", "DEPLOYED", "DEPLOY_FAILED", "DEPLOY_ROLLING_BACK",
    "DEPLOY_ROLLBACK_FAILED", "DEPLOY_ROLLBACK_COMPLETE", "DESTROYING", "DESTROYED",
    "DESTROY_FAILED", "DESTROY_ROLLING_BACK", "DESTROY_ROLLBACK_FAILED",
    "DESTROY_ROLLBACK_COMPLETE", "UPDATING", "UPDATED", "UPDATE_FAILED", "UPDATE_ROLLING_BACK",
    "UPDATE_ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE", "NOT_DEPLOYED", "DEPLOY_INTERRUPTED",
    "UPDATE_INTERRUPTED", "DESTROY_INTERRUPTED"]
RESOURCE_STATUS = [
    "UNKNOWN", "CREATING", "CREATED", "CREATE_FAILED", "DESTROYING", "DESTROYED",
    "DESTROY_FAILED", "UPDATING", "UPDATED", "UPDATE_FAILED", "ROLLING_BACK", "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE", "CREATE_INTERRUPTED", "UPDATE_INTERRUPTED", "DESTROY_INTERRUPTED",
    "RETAINED"]
LINK_STATUS = [
    "UNKNOWN", "CREATING", "CREATED", "CREATE_FAILED", "CREATE_ROLLING_BACK",
    "CREATE_ROLLBACK_FAILED", "CREATE_ROLLBACK_COMPLETE", "DESTROYING", "DESTROYED",
    "DESTROY_FAILED", "DESTROY_ROLLING_BACK", "DESTROY_ROLLBACK_FAILED",
    "DESTROY_ROLLBACK_COMPLETE", "UPDATING", "UPDATED", "UPDATE_FAILED", "UPDATE_ROLLING_BACK",
    "UPDATE_ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE", "CREATE_INTERRUPTED",
    "UPDATE_INTERRUPTED", "DESTROY_INTERRUPTED"]
IS = {n: i for i, n in enumerate(INSTANCE_STATUS)}
RS = {n: i for i, n in enumerate(RESOURCE_STATUS)}
LS = {n: i for i, n in enumerate(LINK_STATUS)}

DEFAULT_PLAN = [
    {"resource": "ordersTable", "action": "create", "type": "aws/dynamodb/table"},
    {"resource": "ordersApi", "action": "create", "type": "aws/lambda/function"},
    {"resource": "assetsBucket", "action": "update", "type": "aws/s3/bucket",
     "fields": ["spec.versioningEnabled"]},
    {"resource": "legacyQueue", "action": "remove", "type": "aws/sqs/queue"},
    {"child": "networking", "action": "create", "resources": ["vpc"]},
    {"link": "ordersApi::ordersTable", "action": "create"},
]
PLAN_ACTIONS = ("create", "update", "recreate", "remove")

CHANNEL_KNOBS = {
    # stream behaviour
    "drop_after": int, "drop_every": int, "ignore_last_event_id": bool, "hang": bool,
    "event_delay_ms": int,
    # change set scripts
    "plan": list, "drift": bool, "error": (bool, str), "stale_events": int,
    # instance scripts
    "fail": (bool, str), "auto_rollback": bool, "fail_message": str,
}
GLOBAL_KNOBS = ("default_knobs", "next_changeset", "latency_ms", "errors", "clock_offset_s",
                "replay_window_s", "validation_diagnostics", "deploy_drift")


class ApiError(Exception):
    """A Bluelink error answer: {"message": ...} plus fields."""

    def __init__(self, status, message, **extra):
        super().__init__(message)
        self.status = status
        self.body = dict({"message": message}, **extra)


_u7_lock = threading.Lock()
_u7_last = [0, 0]


def uuid7():
    """RFC 9562 UUIDv7: 48-bit Unix ms, version 7, a 12-bit counter keeping ids
    generated within one millisecond in order, variant 10, 62 random bits."""
    with _u7_lock:
        ms = int(time.time() * 1000)
        if ms <= _u7_last[0]:
            ms, seq = _u7_last[0], _u7_last[1] + 1
            if seq > 0xFFF:
                ms, seq = ms + 1, 0
        else:
            seq = 0
        _u7_last[:] = [ms, seq]
    v = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | secrets.randbits(62)
    return str(uuid.UUID(int=v))


def sign(key_id, secret, date):
    """Bluelink-Signature-V1 header value (what a correct client sends)."""
    msg = ("%s,bluelink-date=%d" % (key_id, int(date))).encode()
    sig = base64.urlsafe_b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest())
    return 'keyId="%s", headers="bluelink-date", signature="%s"' % (
        key_id, sig.decode().rstrip("="))


def _quoted(part, name):
    kv = part.split("=")
    if len(kv) != 2 or kv[0].strip() != name:
        raise ValueError("bad %s" % name)
    v = kv[1]
    if len(v) < 2 or not (v.startswith('"') and v.endswith('"')):
        raise ValueError("unquoted %s" % name)
    return v[1:-1]


def verify_signature(headers, key_pairs, now):
    """Checks Bluelink-Signature-V1 exactly as the engine's sigv1 package does:
    three comma-separated parts keyId="…", headers="…", signature="…"; message
    "<keyId>,bluelink-date=<date>" plus ",<name>=<value>" per further listed
    header; base64url without padding; |now - date| <= 300. Returns (ok, why)."""
    value = headers.get("Bluelink-Signature-V1")
    if not value:
        return False, "no signature header"
    parts = value.split(",")
    if len(parts) != 3:
        return False, "signature header must have 3 parts"
    try:
        key_id = _quoted(parts[0], "keyId")
        names = [n.strip() for n in _quoted(parts[1], "headers").strip().split(" ")]
        sig = _quoted(parts[2], "signature")
    except ValueError as e:
        return False, str(e)
    secret = key_pairs.get(key_id)
    if secret is None:
        return False, "unknown key id"
    date_h = headers.get("Bluelink-Date")
    if not date_h:
        return False, "no Bluelink-Date"
    try:
        date = int(date_h)
    except ValueError:
        return False, "Bluelink-Date is not an integer"
    msg = "%s,bluelink-date=%d" % (key_id, date)
    for n in names:
        if n.lower() == "bluelink-date":
            continue
        hv = headers.get(n)
        if not hv:
            return False, "signed header %s missing" % n
        msg += ",%s=%s" % (n.lower(), hv)
    if not re.fullmatch(r"[A-Za-z0-9_-]*", sig) or len(sig) % 4 == 1:
        return False, "signature is not base64url without padding"
    try:
        got = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except (binascii.Error, ValueError):
        return False, "signature does not decode"
    want = hmac.new(secret.encode(), msg.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(got, want):
        return False, "signature mismatch"
    if now > date + SKEW_S or now < date - SKEW_S:
        return False, "signature expired (clock skew over %d s)" % SKEW_S
    return True, "ok"


def validate_knobs(knobs):
    if not isinstance(knobs, dict):
        raise ApiError(400, "knobs must be an object")
    for k, v in knobs.items():
        if k not in CHANNEL_KNOBS:
            raise ApiError(400, "unknown knob %r (known: %s)" % (k, ", ".join(sorted(CHANNEL_KNOBS))))
        t = CHANNEL_KNOBS[k]
        if v is None:
            continue
        ok = isinstance(v, t) if t is not int else (isinstance(v, (int, float))
                                                    and not isinstance(v, bool))
        if not ok:
            raise ApiError(400, "knob %s has the wrong type" % k)
    if knobs.get("plan") is not None:
        validate_plan(knobs["plan"])


def validate_plan(plan):
    for i, p in enumerate(plan):
        kinds = [k for k in ("resource", "child", "link") if k in p] if isinstance(p, dict) else []
        if len(kinds) != 1 or p.get("action", "create") not in PLAN_ACTIONS:
            raise ApiError(400, "plan[%d] must be {resource|child|link: name, action: %s}"
                           % (i, "|".join(PLAN_ACTIONS)))


def validate_script(script):
    if not isinstance(script, list):
        raise ApiError(400, "script must be a list of events")
    out = []
    for i, ev in enumerate(script):
        if not isinstance(ev, dict) or not isinstance(ev.get("event"), str):
            raise ApiError(400, "script[%d] must be {event, data, delay_ms?, end?, id?}" % i)
        e = {"event": ev["event"], "data": ev.get("data", {}),
             "delay_ms": ev.get("delay_ms", DEFAULT_STEP_MS)}
        if "end" in ev:
            e["end"] = bool(ev["end"])
        if "id" in ev:
            e["id"] = str(ev["id"])
        out.append(e)
    return out


def is_end(ev):
    """Events that end a stream: explicit, changeStagingComplete, driftDetected,
    error, and finish with endOfStream true (or absent)."""
    if "end" in ev:
        return ev["end"]
    t, d = ev["event"], ev.get("data") or {}
    if t in ("changeStagingComplete", "driftDetected", "error"):
        return True
    return t == "finish" and d.get("endOfStream", True) is not False


class Channel:
    """The events of one change set or instance, with their due times."""

    def __init__(self, kind, cid, knobs):
        self.kind, self.id = kind, cid
        self.knobs = dict(knobs or {})
        self.events = []      # {id, event, data, due, wall, end}
        self.dues = []
        self.connections = 0

    def schedule(self, evs, start_mono=None, backdate_s=0.0):
        """Appends evs after the last scheduled event (or from start_mono)."""
        now_m, now_w = time.monotonic(), time.time()
        t = start_mono if start_mono is not None else now_m - backdate_s
        if self.dues:
            t = max(t, self.dues[-1])
        first = len(self.events)
        for ev in evs:
            t += max(0.0, float(ev.get("delay_ms", DEFAULT_STEP_MS))) / 1000.0
            e = {"id": ev.get("id") or uuid7(), "event": ev["event"], "data": ev.get("data", {}),
                 "due": t, "wall": now_w + (t - now_m), "end": is_end(ev)}
            self.events.append(e)
            self.dues.append(t)
        return first

    def due_count(self, now=None):
        n = bisect.bisect_right(self.dues, time.monotonic() if now is None else now)
        if self.knobs.get("hang"):
            for i in range(n):
                if self.events[i]["end"]:
                    return i
        return n

    def due(self, now=None):
        return self.events[:self.due_count(now)]

    def last_id(self):
        return self.events[-1]["id"] if self.events else None

    def index_of(self, event_id):
        for i, e in enumerate(self.events):
            if e["id"] == event_id:
                return i
        return None


class ChangeSet:
    def __init__(self, body, knobs, instance_id):
        self.id = str(uuid.uuid4())
        self.body = body
        self.instance_id = instance_id or ""
        self.created = time.time()
        self.channel = Channel("changeset", self.id, knobs)
        k = self.channel.knobs
        self.plan = k.get("plan") or DEFAULT_PLAN
        self.last_event_id = None
        stale = int(k.get("stale_events") or 0)
        if stale:
            # Events from an earlier staging on this channel, a few seconds
            # old: inside the replay window, so only the POST's lastEventId
            # keeps them out of a new stream.
            self.channel.schedule([{"event": "resourceChanges", "delay_ms": 0, "data": {
                "resourceName": "staleResource%d" % (i + 1), "new": True, "removed": False,
                "changes": {}, "timestamp": int(time.time()) - 5}} for i in range(stale)],
                backdate_s=5.0)
            self.last_event_id = self.channel.last_id()
        self.channel.schedule(self.script(), start_mono=time.monotonic())

    def script(self):
        k = self.channel.knobs
        step = k.get("event_delay_ms", DEFAULT_STEP_MS)
        ts = int(time.time())
        if k.get("drift"):
            drifted = [p["resource"] for p in self.plan
                       if "resource" in p and p.get("action") in ("update", "recreate")] or ["assetsBucket"]
            return [{"event": "driftDetected", "delay_ms": step, "data": {
                "message": "drift detected for instance %s" % (self.instance_id or "(new)"),
                "reconciliationResult": {"resources": [
                    {"resourceName": n, "resourceId": "res-" + n, "type": "aws/s3/bucket",
                     "oldStatus": 2, "newStatus": 2, "isDrifted": True} for n in drifted],
                    "children": [], "links": []},
                "timestamp": ts}}]
        evs = []
        for p in self.plan:
            evs.append({"event": self._event_type(p), "delay_ms": step, "data": self._item(p, ts)})
            if k.get("error") and len(evs) == 2:
                msg = k["error"] if isinstance(k["error"], str) else \
                    "failed to load blueprint: resource \"ordersApi\" has an invalid handler"
                evs.append({"event": "error", "delay_ms": step, "data": {
                    "message": msg, "diagnostics": [{"level": 1, "message": msg,
                                                     "range": {"start": {"line": 12, "column": 5}}}],
                    "timestamp": ts}})
                return evs
        evs.append({"event": "changeStagingComplete", "delay_ms": step,
                    "data": {"changes": self.blueprint_changes(), "timestamp": ts}})
        return evs

    @staticmethod
    def _event_type(p):
        return ("resourceChanges" if "resource" in p else
                "childChanges" if "child" in p else "linkChanges")

    @staticmethod
    def _resource_changes(p):
        fields = p.get("fields") or (["spec.engineVersion"] if p.get("action") == "recreate" else [])
        recreate = p.get("action") == "recreate"
        return {"modifiedFields": [{"fieldPath": f, "prevValue": {"scalar": {"stringValue": "a"}},
                                    "newValue": {"scalar": {"stringValue": "b"}},
                                    "mustRecreate": recreate} for f in fields],
                "newFields": [], "removedFields": [], "unchangedFields": [],
                "mustRecreate": recreate, "fieldChangesKnownOnDeploy": []}

    def _item(self, p, ts):
        act = p.get("action", "create")
        new, removed = act == "create", act == "remove"
        if "resource" in p:
            return {"resourceName": p["resource"], "new": new, "removed": removed,
                    "changes": {} if new or removed else self._resource_changes(p),
                    "resolveOnDeploy": [], "conditionKnownOnDeploy": False, "timestamp": ts}
        if "child" in p:
            return {"childBlueprintName": p["child"], "new": new, "removed": removed,
                    "changes": {} if removed else {
                        "newResources": {r: {} for r in p.get("resources", [])}},
                    "timestamp": ts}
        a, _, b = p["link"].partition("::")
        return {"resourceAName": a, "resourceBName": b, "new": new, "removed": removed,
                "changes": {"modifiedFields": [], "newFields": [], "removedFields": [],
                            "unchangedFields": [], "fieldChangesKnownOnDeploy": []},
                "timestamp": ts}

    def blueprint_changes(self):
        c = {"newResources": {}, "resourceChanges": {}, "removedResources": [],
             "removedLinks": [], "newChildren": {}, "childChanges": {}, "recreateChildren": [],
             "removedChildren": [], "newExports": {}, "exportChanges": {},
             "unchangedExports": [], "removedExports": [],
             "metadataChanges": {"newFields": [], "modifiedFields": [], "unchangedFields": [],
                                 "removedFields": []}, "resolveOnDeploy": []}
        for p in self.plan:
            act = p.get("action", "create")
            if "resource" in p:
                n = p["resource"]
                if act == "create":
                    c["newResources"][n] = {"appliedResourceInfo": {"resourceName": n}}
                elif act == "remove":
                    c["removedResources"].append(n)
                else:
                    c["resourceChanges"][n] = self._resource_changes(p)
            elif "child" in p:
                n = p["child"]
                if act == "create":
                    c["newChildren"][n] = {"newResources": {r: {} for r in p.get("resources", [])},
                                           "newChildren": {}, "newExports": {}}
                elif act == "remove":
                    c["removedChildren"].append(n)
                elif act == "recreate":
                    c["recreateChildren"].append(n)
                else:
                    c["childChanges"][n] = {"newResources": {}, "resourceChanges": {}}
            elif act == "remove":
                c["removedLinks"].append(p["link"])
        return c

    def status(self):
        due = self.channel.due()
        if not due:
            return "STARTING"
        last = due[-1]["event"]
        return {"changeStagingComplete": "CHANGES_STAGED", "error": "FAILED",
                "driftDetected": "DRIFT_DETECTED"}.get(last, "STAGING_CHANGES")

    def to_json(self):
        st = self.status()
        return {"id": self.id, "instanceId": self.instance_id, "destroy": False, "status": st,
                "blueprintLocation": "%s://%s/%s" % (
                    self.body.get("fileSourceScheme", "file"), self.body.get("directory"),
                    self.body.get("blueprintFile", "project.blueprint.yml")),
                "changes": self.blueprint_changes() if st == "CHANGES_STAGED" else {},
                "created": int(self.created)}


class Instance:
    def __init__(self, name, inst_id, knobs):
        self.id = inst_id or str(uuid.uuid4())
        self.name = name
        self.seq = STATE.next_seq()
        self.channel = Channel("instance", self.id, knobs)
        self.deployments = 0
        self.last_attempt = None

    def deploy(self, plan, update, knobs=None, script=None, backdate_s=0.0, auto_rollback=None):
        """Schedules one deployment on the channel; returns the lastEventId a
        POST/PATCH answer carries (the channel's last event before it)."""
        before = self.channel.last_id()
        k = dict(self.channel.knobs)
        k.update(knobs or {})
        if auto_rollback is not None:
            k["auto_rollback"] = auto_rollback
        self.deployments += 1
        self.last_attempt = time.time() - backdate_s
        evs = script if script is not None else self.script(plan, update, k)
        self.channel.schedule(evs, backdate_s=backdate_s)
        return before

    def script(self, plan, update, k):
        step = k.get("event_delay_ms", DEFAULT_STEP_MS)
        iid, ts = self.id, int(time.time())
        fail = k.get("fail")
        if fail is True:
            # the last resource to create (else to change) fails
            creates = [p["resource"] for p in plan
                       if "resource" in p and p.get("action", "create") == "create"]
            others = [p["resource"] for p in plan if "resource" in p]
            fail = (creates or others or [None])[-1]
        reason = k.get("fail_message") or "AccessDenied: not authorized to perform the action"
        evs = [{"event": "instanceUpdate", "delay_ms": step, "data": {
            "instanceId": iid, "status": IS["UPDATING" if update else "DEPLOYING"],
            "updateTimestamp": ts}}]

        def res(name, status, reasons=()):
            evs.append({"event": "resource", "delay_ms": step, "data": {
                "instanceId": iid, "resourceId": "res-" + name, "resourceName": name, "group": 0,
                "status": RS[status], "preciseStatus": RS[status], "failureReasons": list(reasons),
                "attempt": 1, "canRetry": False, "updateTimestamp": ts}})

        done = []
        failed = False
        for p in plan:
            act = p.get("action", "create")
            if "resource" in p:
                n = p["resource"]
                steps = {"create": [("CREATING", "CREATED")], "update": [("UPDATING", "UPDATED")],
                         "remove": [("DESTROYING", "DESTROYED")],
                         "recreate": [("DESTROYING", "DESTROYED"), ("CREATING", "CREATED")]}[act]
                for start, end in steps:
                    res(n, start)
                    if n == fail:
                        res(n, {"CREATING": "CREATE_FAILED", "UPDATING": "UPDATE_FAILED",
                                "DESTROYING": "DESTROY_FAILED"}[start], [reason])
                        failed = True
                        break
                    res(n, end)
                if failed:
                    break
                done.append(n)
            elif "child" in p:
                a, b = ("UPDATING", "UPDATED") if update else ("DEPLOYING", "DEPLOYED")
                for st in (a, b):
                    evs.append({"event": "child", "delay_ms": step, "data": {
                        "parentInstanceId": iid, "childInstanceId": "child-" + p["child"],
                        "childName": p["child"], "group": 1, "status": IS[st],
                        "failureReasons": [], "updateTimestamp": ts}})
            else:
                for st in ("CREATING", "CREATED") if act != "remove" else ("DESTROYING", "DESTROYED"):
                    evs.append({"event": "link", "delay_ms": step, "data": {
                        "instanceId": iid, "linkId": "link-" + p["link"], "linkName": p["link"],
                        "status": LS[st], "preciseStatus": 0, "failureReasons": [],
                        "currentStageAttempt": 1, "canRetryCurrentStage": False,
                        "updateTimestamp": ts}})
        verb = "UPDATE" if update else "DEPLOY"
        if not failed:
            evs.append({"event": "finish", "delay_ms": step, "data": {
                "instanceId": iid, "status": IS["UPDATED" if update else "DEPLOYED"],
                "failureReasons": [], "finishTimestamp": ts, "updateTimestamp": ts,
                "durations": {"prepareDuration": 120.0, "totalDuration": 1500.0},
                "endOfStream": True}})
            return evs
        rollback = bool(k.get("auto_rollback"))
        why = ["resource %s: %s" % (fail, reason)]
        evs.append({"event": "finish", "delay_ms": step, "data": {
            "instanceId": iid, "status": IS[verb + "_FAILED"], "failureReasons": why,
            "finishTimestamp": ts, "updateTimestamp": ts,
            "durations": {"prepareDuration": 120.0, "totalDuration": 900.0},
            "endOfStream": not rollback}})
        if not rollback:
            return evs
        evs.append({"event": "instanceUpdate", "delay_ms": step, "data": {
            "instanceId": iid, "status": IS[verb + "_ROLLING_BACK"], "updateTimestamp": ts}})
        evs.append({"event": "preRollbackState", "delay_ms": step, "data": {
            "instanceId": iid, "instanceName": self.name, "status": IS[verb + "_FAILED"],
            "resources": [{"resourceName": n, "status": RS["CREATED"]} for n in done],
            "links": [], "children": [], "capturedAt": ts}})
        for n in reversed(done):
            res(n, "ROLLING_BACK")
            res(n, "ROLLBACK_COMPLETE")
        evs.append({"event": "finish", "delay_ms": step, "data": {
            "instanceId": iid, "status": IS[verb + "_ROLLBACK_COMPLETE"], "failureReasons": why,
            "finishTimestamp": ts, "updateTimestamp": ts,
            "durations": {"prepareDuration": 120.0, "totalDuration": 2100.0},
            "endOfStream": True}})
        return evs

    def state(self):
        due = self.channel.due()
        status, deployed, updated = IS["NOT_DEPLOYED"], None, None
        resources = {}
        for e in due:
            d = e["data"] if isinstance(e["data"], dict) else {}
            if e["event"] in ("instanceUpdate", "finish") and isinstance(d.get("status"), int):
                status, updated = d["status"], e["wall"]
                if e["event"] == "finish" and d["status"] in (IS["DEPLOYED"], IS["UPDATED"]):
                    deployed = e["wall"]
            elif e["event"] == "resource":
                rid = d.get("resourceId") or d.get("resourceName")
                resources[rid] = {"resourceId": rid, "name": d.get("resourceName"),
                                  "status": d.get("status"),
                                  "failureReasons": d.get("failureReasons") or []}
        if not due and self.deployments:
            status = IS["PREPARING"]
        return {"instanceId": self.id, "instanceName": self.name, "status": status,
                "lastStatusUpdateTimestamp": int(updated or self.last_attempt or 0),
                "lastDeployedTimestamp": int(deployed or 0),
                "lastDeployAttemptTimestamp": int(self.last_attempt or 0),
                "resources": resources, "links": {}, "children": {}, "exports": {},
                "metadata": {}}


class State(common.BaseState):
    def __init__(self, tokens, api_keys, key_pairs):
        self.api_keys, self.key_pairs = api_keys, key_pairs
        super().__init__(tokens)

    def reset_provider(self):
        self.changesets = {}
        self.instances = {}
        self.knobs = {"default_knobs": {}, "next_changeset": [], "latency_ms": 0, "errors": [],
                      "clock_offset_s": 0, "replay_window_s": REPLAY_WINDOW_S,
                      "validation_diagnostics": None, "deploy_drift": False}

    def now(self):
        return time.time() + float(self.knobs.get("clock_offset_s") or 0)

    def instance(self, id_or_name):
        inst = self.instances.get(id_or_name)
        if inst is None:
            for i in self.instances.values():
                if i.name == id_or_name:
                    return i
        return inst


STATE = None


class Handler(common.FakeHandler):
    server_version = "BluelinkFake/1.0"
    log_name = "bluelink-fake"

    # -- plumbing -------------------------------------------------------
    def _read_body(self):
        raw = self._read_sized(MAX_BODY)
        if raw is None:
            raise ApiError(413, "request body too large")
        return raw

    def _handle(self):
        url, path, parts = self._begin()
        raw = self._read_request(self._read_body, ApiError, lambda e: e.body,
                                 {"message": "bad request body"})
        if raw is None:
            return
        text = raw.decode("utf-8", "replace")
        self.json, self.json_ok = common.parse_json_text(text)
        is_fake = path == "/_fake" or path.startswith("/_fake/")
        if not is_fake:
            self._record(url, path,
                         self.json if (self.json_ok and text.strip()) else (text or None),
                         tail={"auth": None})
        try:
            if is_fake:
                self._control(parts[1:])
                return
            inj = self._injected_error(path)
            if inj:
                self._send_injected(inj)
                return
            self._auth()
            if not parts or parts[0] != "v1":
                raise ApiError(404, "Not Found")
            result = self._api(parts[1:])
            if result is None:
                return  # streamed
            self._send_json(*result)
        except ApiError as e:
            self._send_json(e.status, e.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = lambda self: self._handle()

    def _injected_error(self, path):
        with STATE.lock:
            return common.take_rule(STATE.knobs.get("errors"), self.command, path)

    def _send_injected(self, rule):
        if rule.get("mode") == "close":
            self._close_unanswered()
            return
        self._send_json(int(rule.get("status", 503)),
                        rule.get("body") or {"message": rule.get("message", "injected error")})

    def _auth(self):
        """Any one of: bearer token, API key, or a valid signature; else 401."""
        mode = None
        scheme, _, tok = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and tok.strip() in STATE.tokens:
            mode = "bearer"
        elif (self.headers.get("Bluelink-Api-Key") or "") in STATE.api_keys:
            mode = "apiKey"
        elif self.headers.get("Bluelink-Signature-V1"):
            ok, why = verify_signature(self.headers, STATE.key_pairs, STATE.now())
            if ok:
                mode = "signature"
            elif self.rec is not None:
                self.rec["authFailure"] = why
        if self.rec is not None:
            self.rec["auth"] = mode
        if not mode:
            raise ApiError(401, "Unauthorized")

    def _method(self, *allowed):
        if self.command not in allowed:
            raise ApiError(405, "Method Not Allowed")

    def _body(self):
        if not self.json_ok or not isinstance(self.json, dict):
            raise ApiError(400, "request body must be a JSON object")
        return self.json

    # -- provider API ---------------------------------------------------
    def _api(self, p):
        if p == ["deployments", "changes"]:
            self._method("POST")
            return self._create_changeset()
        if len(p) == 4 and p[:2] == ["deployments", "changes"] and p[3] == "stream":
            self._method("GET")
            with STATE.lock:
                cs = STATE.changesets.get(p[2])
                if cs is None:
                    raise ApiError(404, "change set %r not found" % p[2])
            self._stream(cs.channel)
            return None
        if p == ["deployments", "instances"]:
            self._method("GET", "POST")
            return self._list_instances() if self.command == "GET" else self._deploy(None)
        if len(p) == 3 and p[:2] == ["deployments", "instances"]:
            self._method("GET", "PATCH")
            if self.command == "PATCH":
                return self._deploy(p[2])
            with STATE.lock:
                return 200, self._instance(p[2]).state()
        if len(p) == 4 and p[:2] == ["deployments", "instances"] and p[3] == "stream":
            self._method("GET")
            with STATE.lock:
                inst = self._instance(p[2])
            self._stream(inst.channel)
            return None
        raise ApiError(404, "Not Found")

    def _instance(self, id_or_name):
        inst = STATE.instance(id_or_name)
        if inst is None:
            raise ApiError(404, "blueprint instance %r not found" % id_or_name)
        return inst

    def _create_changeset(self):
        body = self._body()
        errors = []
        scheme = body.get("fileSourceScheme", "file")
        if scheme not in FILE_SCHEMES:
            errors.append({"location": "fileSourceScheme", "type": "oneof",
                           "message": "fileSourceScheme must be one of " + " ".join(FILE_SCHEMES)})
        if not isinstance(body.get("directory"), str) or not body["directory"]:
            errors.append({"location": "directory", "type": "required",
                           "message": "the directory field is required"})
        for f in ("blueprintFile", "instanceName", "instanceId"):
            if body.get(f) is not None and not isinstance(body[f], str):
                errors.append({"location": f, "type": "string", "message": f + " must be a string"})
        if body.get("config") is not None and not isinstance(body["config"], dict):
            errors.append({"location": "config", "type": "object",
                           "message": "config must be an object"})
        if errors:
            raise ApiError(422, "request body failed validation", errors=errors)
        with STATE.lock:
            diags = STATE.knobs.get("validation_diagnostics")
            if diags:
                raise ApiError(422, "blueprint validation failed", validationDiagnostics=diags)
            queue = STATE.knobs.get("next_changeset") or []
            knobs = dict(STATE.knobs.get("default_knobs") or {})
            knobs.update(queue.pop(0) if queue else {})
            inst_id = body.get("instanceId")
            if not inst_id and body.get("instanceName"):
                inst = STATE.instance(body["instanceName"])
                inst_id = inst.id if inst else ""
            cs = ChangeSet(body, knobs, inst_id)
            STATE.changesets[cs.id] = cs
            out = {"data": cs.to_json()}
            if cs.last_event_id:
                out["lastEventId"] = cs.last_event_id
            return 202, out

    def _deploy(self, id_or_name):
        """POST (new instance) / PATCH (existing) — for the approval issue."""
        body = self._body()
        with STATE.lock:
            cs_id = body.get("changeSetId")
            cs = STATE.changesets.get(cs_id) if isinstance(cs_id, str) else None
            if cs is None:
                raise ApiError(400, "change set %r not found: stage one with POST "
                               "/v1/deployments/changes first" % cs_id)
            st = cs.status()
            if st != "CHANGES_STAGED":
                raise ApiError(400, "change set %s is not ready to deploy (status %s)" % (cs.id, st))
            if STATE.knobs.get("deploy_drift"):
                raise ApiError(409, "drift detected: resources were changed outside Bluelink",
                               driftDetected=True)
            if id_or_name is None:
                name = body.get("instanceName")
                if not isinstance(name, str) or not name:
                    raise ApiError(422, "request body failed validation", errors=[
                        {"location": "instanceName", "type": "required",
                         "message": "the instanceName field is required"}])
                if STATE.instance(name):
                    raise ApiError(400, "instance %r already exists: use PATCH "
                                   "/v1/deployments/instances/{idOrName}" % name)
                inst = Instance(name, None, STATE.knobs.get("default_knobs"))
                STATE.instances[inst.id] = inst
                update = False
            else:
                inst = self._instance(id_or_name)
                update = inst.deployments > 0
            before = inst.deploy(cs.plan, update, auto_rollback=bool(body.get("autoRollback")))
            out = {"data": inst.state()}
            if before:
                out["lastEventId"] = before
            return 202, out

    def _list_instances(self):
        q = self.qs
        try:
            offset = int(q.get("offset") or 0)
            limit = int(q.get("limit") or 10)
        except ValueError:
            raise ApiError(400, "offset and limit must be integers")
        if offset < 0 or limit < 1:
            raise ApiError(400, "offset must be >= 0 and limit >= 1")
        limit = min(limit, 100)
        search = (q.get("search") or "").lower()
        with STATE.lock:
            insts = sorted(STATE.instances.values(), key=lambda i: i.seq, reverse=True)
            insts = [i for i in insts if search in i.name.lower()]
            page = insts[offset:offset + limit]
            items = []
            for i in page:
                s = i.state()
                items.append({"id": s["instanceId"], "name": s["instanceName"],
                              "status": s["status"],
                              "lastDeployedTimestamp": s["lastDeployedTimestamp"]})
            return 200, {"instances": items, "totalCount": len(insts)}

    # -- SSE --------------------------------------------------------------
    def _stream(self, ch):
        lei = (self.headers.get("Last-Event-ID") or "").strip()
        with STATE.lock:
            k = dict(ch.knobs)
            ch.connections += 1
            conn = ch.connections
            window = float(STATE.knobs.get("replay_window_s") or REPLAY_WINDOW_S)
            start = None
            if lei and not k.get("ignore_last_event_id"):
                idx = ch.index_of(lei)
                start = idx + 1 if idx is not None else None
            if start is None:
                cutoff = time.time() - window
                start = len(ch.events)
                for i, e in enumerate(ch.events):
                    if e["wall"] >= cutoff:
                        start = i
                        break
            rec, epoch = STATE.open_stream({
                "channel": ch.id, "kind": ch.kind, "connection": conn,
                "openedAt": time.time(), "closedAt": None,
                "requestLastEventId": self.headers.get("Last-Event-ID"),
                "requestDate": self.headers.get("Bluelink-Date"),
                "auth": self.rec.get("auth") if self.rec else None,
                "startIndex": start, "lastEventId": None, "eventsSent": 0, "sentIds": [],
                "reason": None})
        reason = "error"
        try:
            self._start_sse()
            i, sent_here = start, 0
            drop = k.get("drop_every") or (k.get("drop_after") if conn == 1 else None)
            while True:
                if common.SHUTDOWN.is_set():
                    reason = "server_shutdown"
                    break
                if drop and sent_here >= int(drop):
                    reason = "dropped"
                    break
                now = time.monotonic()
                with STATE.lock:
                    k = dict(ch.knobs)
                    dc = ch.due_count(now)
                    ev = ch.events[i] if i < len(ch.events) else None
                if ev is not None and i < dc:
                    data = json.dumps(ev["data"], separators=(",", ":")).encode()
                    self._write(common.sse_frame(data, ev["event"], ev["id"]))
                    sent_here += 1
                    with STATE.lock:
                        rec["eventsSent"] += 1
                        rec["lastEventId"] = ev["id"]
                        rec["sentIds"].append(ev["id"])
                    i += 1
                    if ev["end"]:
                        reason = "end"
                        break
                    continue
                # No keep-alives and no server-side timeout (PROVIDERS.md).
                wait = 0.2 if ev is None else min(0.2, max(0.0, ev["due"] - now))
                if self._client_gone(wait):
                    reason = "client_closed"
                    break
        except OSError:
            reason = "client_closed"
        finally:
            self._end_stream(rec, epoch, reason)

    # -- control API --------------------------------------------------------
    def _control(self, p):
        m = self.command
        if self.json is not None and not isinstance(self.json, dict) or not self.json_ok:
            raise ApiError(400, "control bodies must be JSON objects")
        body = self.json or {}
        ok = self._send_json
        with STATE.lock:
            if self._control_common(p, body):
                return
            if p == ["sign"] and m == "GET":
                key_id = self.qs.get("keyId") or next(iter(STATE.key_pairs))
                date = int(self.qs.get("date") or STATE.now())
                return ok(200, {"Bluelink-Date": str(date),
                                "Bluelink-Signature-V1": sign(key_id, STATE.key_pairs[key_id], date)})
            if p == ["changesets"] and m == "GET":
                return ok(200, [self._cs_json(c) for c in STATE.changesets.values()])
            if len(p) in (2, 3) and p[0] == "changesets":
                cs = STATE.changesets.get(p[1])
                if cs is None:
                    raise ApiError(404, "no change set %s" % p[1])
                return self._channel_route(p, body, cs.channel, lambda: self._cs_json(cs))
            if p == ["instances"] and m == "POST":
                return ok(201, self._fake_instance(body))
            if p == ["instances"] and m == "GET":
                return ok(200, [self._inst_json(i) for i in
                                sorted(STATE.instances.values(), key=lambda i: i.seq)])
            if len(p) in (2, 3) and p[0] == "instances":
                inst = STATE.instance(p[1])
                if inst is None:
                    raise ApiError(404, "no instance %s" % p[1])
                return self._channel_route(p, body, inst.channel, lambda: self._inst_json(inst))
        raise ApiError(404, "no control route for %s %s" % (m, self.path))

    def _channel_route(self, p, body, channel, to_json):
        """GET /_fake/{changesets|instances}/{id}, or POST …/{id}/knobs (merge)."""
        if len(p) == 3 and p[2] == "knobs" and self.command == "POST":
            validate_knobs(body)
            channel.knobs.update(body)
        elif len(p) == 3 or self.command != "GET":
            raise ApiError(404, "no control route")
        return self._send_json(200, to_json())

    def _set_global(self, body):
        for k in body:
            if k not in GLOBAL_KNOBS:
                raise ApiError(400, "unknown global knob %r (known: %s)" % (k, ", ".join(GLOBAL_KNOBS)))
        if "default_knobs" in body:
            body["default_knobs"] = body["default_knobs"] or {}
            validate_knobs(body["default_knobs"])
        if "next_changeset" in body:
            nc = common.as_list(body["next_changeset"])
            for kn in nc:
                validate_knobs(kn)
            body["next_changeset"] = [dict(kn) for kn in nc]
        if "errors" in body:
            body["errors"] = common.rule_list(body["errors"])
            if body["errors"] is None:
                raise ApiError(400, "errors must be a list of objects")
        STATE.knobs.update(body)

    def _fake_instance(self, body):
        """Creates an instance (or a further deployment on an existing one)
        with a generated or given script, without a change set."""
        name = body.get("name") or body.get("instanceName") or "stack-%d" % (STATE.seq + 1)
        knobs = dict(STATE.knobs.get("default_knobs") or {})
        knobs.update(body.get("knobs") or {})
        validate_knobs(knobs)
        plan = body.get("plan") or knobs.get("plan") or DEFAULT_PLAN
        validate_plan(plan)
        script = validate_script(body["script"]) if body.get("script") is not None else None
        inst = STATE.instance(name)
        if inst is None:
            inst = Instance(name, body.get("id"), knobs)
            STATE.instances[inst.id] = inst
            update = False
        else:
            inst.channel.knobs.update(body.get("knobs") or {})
            update = inst.deployments > 0
        before = inst.deploy(plan, update, script=script,
                             backdate_s=float(body.get("backdate_s") or 0),
                             auto_rollback=body.get("autoRollback"))
        out = self._inst_json(inst)
        out["lastEventId"] = before
        return out

    @staticmethod
    def _channel_json(ch):
        now = time.monotonic()
        return {"knobs": ch.knobs, "connections": ch.connections, "dueCount": ch.due_count(now),
                "events": [{"id": e["id"], "event": e["event"], "data": e["data"], "end": e["end"],
                            "wall": e["wall"], "due": e["due"] <= now} for e in ch.events]}

    def _cs_json(self, cs):
        out = cs.to_json()
        out["_fake"] = dict(self._channel_json(cs.channel), lastEventId=cs.last_event_id,
                            plan=cs.plan)
        return out

    def _inst_json(self, inst):
        out = inst.state()
        out["_fake"] = dict(self._channel_json(inst.channel), deployments=inst.deployments)
        return out


def main(argv=None):
    global STATE

    def more_args(ap):
        ap.add_argument("--api-key", action="append",
                        help="accepted Bluelink-Api-Key (repeatable)")
        ap.add_argument("--key-id", action="append",
                        help="signature key id (pairs with --secret)")
        ap.add_argument("--secret", action="append",
                        help="signature secret of the matching --key-id")

    ap = common.arg_parser("Fake Bluelink Deploy Engine for deploy-mcp tests",
                           "accepted bearer token (repeatable)", more_args)
    args = ap.parse_args(argv)
    key_ids = args.key_id or [DEFAULT_KEY_ID]
    secrets_ = args.secret or [DEFAULT_SECRET]
    if len(key_ids) != len(secrets_):
        ap.error("--key-id and --secret must be given the same number of times")
    STATE = State(set(args.token or [DEFAULT_TOKEN]), set(args.api_key or [DEFAULT_API_KEY]),
                  dict(zip(key_ids, secrets_)))
    return common.serve(args, Handler, STATE)


if __name__ == "__main__":
    sys.exit(main())
