"""Bluelink Deploy Engine end to end: the real binary over stdio against
tests/fakes/bluelink_fake.py — the three auth schemes (and a clear 401 for
each), staging a change set and following it to ready with its summary,
drift, resuming an instance stream with Last-Event-ID across drops, an
auto-rollback stream followed until endOfStream, unsupported tools, get/list,
and secrets (token, API key, HMAC secret, signatures) never on stdout/stderr."""

import contextlib
import json
import re
import subprocess
import socket
import time

from harness import BIN, TOKEN, Fake, Server, Suite, structured

suite = Suite("bluelink")

API_KEY = "bl_e2e_APIKEY_0123456789abcdef"
KEY_ID = "deploy-mcp-e2e"
SECRET = "bl_e2e_HMAC_SECRET_0123456789abcdef"
ENV = {"BL_TOKEN": TOKEN, "BL_KEY": API_KEY, "BL_SECRET": SECRET}
AUTHS = {
    "bearer": {"type": "bearer", "tokenEnv": "BL_TOKEN"},
    "apiKey": {"type": "apiKey", "keyEnv": "BL_KEY"},
    "signature": {"type": "signature", "keyId": KEY_ID, "secretEnv": "BL_SECRET"},
}
FAST = {"event_delay_ms": 30}

FAKE = Fake("bluelink", extra_args=("--api-key", API_KEY, "--key-id", KEY_ID,
                                    "--secret", SECRET))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config(auth="apiKey", **extra):
    t = {"provider": "bluelink", "baseUrl": FAKE.url, "instanceName": "prod-stack",
         "directory": "infra", "blueprintFile": "project.blueprint.yml",
         "auth": AUTHS[auth] if isinstance(auth, str) else auth}
    t.update(extra)
    # A free port for the approval page, so parallel suites do not compete for 8788.
    return {"targets": {"infra": t}, "approval": {"listen": "127.0.0.1:%d" % free_port()}}


def reset(**knobs):
    FAKE.call("POST", "/_fake/reset", {})
    FAKE.call("POST", "/_fake/knobs", dict({"default_knobs": FAST}, **knobs))


def secrets_seen():
    """Every secret the fake saw: configured values plus signatures sent."""
    out = {TOKEN, API_KEY, SECRET}
    for r in FAKE.requests():
        h = r["headers"]
        m = re.search(r'signature="([^"]+)"', h.get("bluelink-signature-v1", ""))
        if m:
            out.add(m.group(1))
        if h.get("bluelink-api-key"):
            out.add(h["bluelink-api-key"])
    return out


@contextlib.contextmanager
def server(auth="apiKey", env=ENV, **extra):
    s = Server(config(auth, **extra), env=env, args=("--log-level", "debug"))
    try:
        s.initialize()
        yield s
        s.close_stdin()
        rc = s.wait_exit(10)
        out, err = s.stdout_bytes().decode(errors="replace"), s.stderr()
        assert rc == 0, "exit status %s; stderr: %s" % (rc, err[-2000:])
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert marker not in err, err[-4000:]
        for secret in secrets_seen():
            assert secret not in out, "a secret reached stdout"
            assert secret not in err, "a secret reached stderr"
    finally:
        s.close()


def ok(result):
    assert not result.get("isError"), result
    return structured(result)


def error(result):
    assert result.get("isError"), result
    return structured(result)["error"]


def streams():
    return FAKE.call("GET", "/_fake/streams")


def settled(name, timeout=10):
    """Waits until the fake's instance has finished its deployment."""
    deadline = time.monotonic() + timeout
    while True:
        inst = FAKE.call("GET", "/_fake/instances/" + name)
        if inst["_fake"]["dueCount"] == len(inst["_fake"]["events"]):
            return inst
        assert time.monotonic() < deadline, inst
        time.sleep(0.05)


@suite.test
def each_auth_scheme_stages_a_change_set():
    for mode in ("bearer", "apiKey", "signature"):
        reset()
        with server(mode) as s:
            dep = ok(s.call("create_preview", {"branch": "main"}))["deployment"]
            assert dep["id"].startswith("changeset:"), dep
            assert dep["environment"] == "preview" and dep["provider"] == "bluelink", dep
            assert dep["status"] == "queued" and dep["providerStatus"] == "STARTING", dep
            assert "branch" in dep.get("note", ""), dep
            posts = [r for r in FAKE.requests() if r["method"] == "POST"]
            assert len(posts) == 1 and posts[0]["path"] == "/v1/deployments/changes"
            assert posts[0]["auth"] == mode, (mode, posts[0]["auth"])
            assert posts[0]["body"] == {"fileSourceScheme": "file", "directory": "infra",
                                        "blueprintFile": "project.blueprint.yml",
                                        "instanceName": "prod-stack", "config": {}}, posts[0]
            if mode == "signature":
                h = posts[0]["headers"]
                assert h["bluelink-signature-v1"].startswith(
                    'keyId="%s", headers="bluelink-date", signature="' % KEY_ID), h


@suite.test
def wrong_credentials_are_a_clear_401():
    reset()
    wrong = {"BL_TOKEN": "not-the-token-xyz", "BL_KEY": "not-the-key-xyz",
             "BL_SECRET": "not-the-secret-xyz"}
    for mode, var, hint in (("bearer", "BL_TOKEN", "token"), ("apiKey", "BL_KEY", "API key"),
                            ("signature", "BL_SECRET", "clock")):
        with server(mode, env=wrong) as s:
            e = error(s.call("create_preview"))
            assert e["code"] == "unauthorized" and e["httpStatus"] == 401, e
            assert e["provider"] == "bluelink" and e["retryable"] is False, e
            assert var in e["message"] and hint in e["message"], e
            assert wrong[var] not in e["message"], e
            out = s.stdout_bytes().decode() + s.stderr()
            assert wrong[var] not in out


@suite.test
def missing_variable_is_named():
    reset()
    with server("signature", env={}) as s:
        t = ok(s.call("list_targets"))["targets"][0]
        assert t["ready"] is False and "BL_SECRET" in t["problem"], t
        e = error(s.call("create_preview"))
        assert e["code"] == "missing_credentials" and "BL_SECRET" in e["message"], e
    s = Server(config("apiKey"), env={})
    try:
        path = s.tmp + "/config.json"
        r = subprocess.run([BIN, "--config", path, "--check"], capture_output=True, text=True,
                           timeout=10, env={"PATH": "/usr/bin:/bin"})
        assert r.returncode == 1 and "BL_KEY" in r.stdout + r.stderr, r
    finally:
        s.close()


@suite.test
def bad_auth_config_names_the_field():
    s = Server(config({"type": "oauth"}))
    try:
        r = subprocess.run([BIN, "--config", s.tmp + "/config.json", "--check"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and "auth.type" in r.stderr and "infra" in r.stderr, r
    finally:
        s.close()


@suite.test
def change_set_streams_to_ready_with_summary():
    reset()
    with server("signature") as s:
        dep = ok(s.call("create_preview"))["deployment"]
        sc = ok(s.call("stream_events", {"deploymentId": dep["id"], "maxSeconds": 20},
                       progress="p1"))
        assert sc["status"] == "ready" and sc["terminal"] is True, sc
        assert sc["providerStatus"] == "CHANGES_STAGED" and sc["eventCount"] == 7, sc
        msgs = [m["params"].get("message", "") for _, m in
                s.notes_where("notifications/progress", "p1")]
        assert "resource ordersTable would be created" in " ".join(msgs), msgs
        assert any("2 to create (ordersTable, ordersApi)" in m for m in msgs), msgs
        got = ok(s.call("get_deployment", {"deploymentId": dep["id"]}))["deployment"]
        assert got["status"] == "ready" and got["providerStatus"] == "CHANGES_STAGED", got
        ch = got["changes"]
        assert ch["counts"] == {"create": 2, "update": 1, "recreate": 0, "remove": 1}, ch
        assert ch["resources"]["remove"] == ["legacyQueue"], ch
        assert "change sets" in got["note"], got
        # A cursor taken after the last staging event ends at once, unconnected.
        opened = streams()["opened"]
        again = ok(s.call("stream_events", {"deploymentId": dep["id"], "cursor": sc["cursor"],
                                            "maxSeconds": 5}))
        assert again["status"] == "ready" and again["eventCount"] == 0, again
        assert again["durationMs"] < 2000 and streams()["opened"] == opened, again


@suite.test
def create_preview_wait_and_drift():
    reset(next_changeset=[{"drift": True}])
    with server() as s:
        r = ok(s.call("create_preview", {"wait": True, "maxSeconds": 20}))
        assert r["deployment"]["status"] == "failed", r
        assert r["stream"]["status"] == "failed" and r["stream"]["eventCount"] == 1, r
        f = r["stream"]["failure"]
        assert f["code"] == "drift_detected" and "drift" in f["message"], f
        assert "assetsBucket" in f["message"], f
        got = ok(s.call("get_deployment", {"deploymentId": r["deployment"]["id"]}))["deployment"]
        assert got["status"] == "failed" and got["providerStatus"] == "DRIFT_DETECTED", got
        assert got["error"]["code"] == "drift_detected", got
        r = ok(s.call("create_preview", {"wait": True, "message": "again"}))
        assert r["stream"]["status"] == "ready", r
        # The staged-changes summary comes with the waited deployment, as it
        # does from get_deployment.
        dep = r["deployment"]
        assert dep["status"] == "ready" and dep["providerStatus"] == "CHANGES_STAGED", dep
        got = ok(s.call("get_deployment", {"deploymentId": dep["id"]}))["deployment"]
        assert dep["changes"] == got["changes"] and "counts" in dep["changes"], (dep, got)


@suite.test
def first_connect_resumes_after_the_posts_last_event():
    reset(next_changeset=[{"stale_events": 2}])
    with server() as s:
        dep = ok(s.call("create_preview"))["deployment"]
        cs = FAKE.call("GET", "/_fake/changesets/" + dep["id"][len("changeset:"):])
        post_last = cs["_fake"]["lastEventId"]
        assert post_last
        sc = ok(s.call("stream_events", {"deploymentId": dep["id"], "maxSeconds": 20}))
        assert sc["status"] == "ready" and sc["eventCount"] == 7, sc
        recs = streams()["closed"]
        assert recs[0]["requestLastEventId"] == post_last, recs


@suite.test
def instance_stream_resumes_with_last_event_id():
    reset()
    with server() as s:
        inst = FAKE.call("POST", "/_fake/instances",
                         {"name": "prod-stack", "knobs": dict(FAST, drop_every=3)})
        total = len(inst["_fake"]["events"])
        sc = ok(s.call("stream_events", {"deploymentId": inst["instanceId"], "maxSeconds": 30},
                       progress="p2"))
        assert sc["status"] == "ready" and sc["providerStatus"] == "DEPLOYED", sc
        assert sc["eventCount"] == total, (sc["eventCount"], total)
        recs = sorted(streams()["closed"], key=lambda r: r["connection"])
        assert len(recs) == (total + 2) // 3, recs
        assert recs[0]["requestLastEventId"] is None
        for prev, cur in zip(recs, recs[1:]):
            assert cur["requestLastEventId"] == prev["lastEventId"], (prev, cur)
        sent = [i for r in recs for i in r["sentIds"]]
        assert sent == [e["id"] for e in inst["_fake"]["events"]], "gap or repeat"
        msgs = " ".join(m["params"].get("message", "") for _, m in
                        s.notes_where("notifications/progress", "p2"))
        assert "resource ordersTable: CREATED" in msgs and "link ordersApi::ordersTable: CREATED" \
            in msgs, msgs
        assert not re.search(r":\s*\d+\b", msgs), "a status went out as a number: " + msgs


@suite.test
def server_that_ignores_last_event_id_is_deduplicated():
    reset()
    with server() as s:
        inst = FAKE.call("POST", "/_fake/instances", {"name": "replayer", "knobs": dict(
            FAST, drop_after=5, ignore_last_event_id=True)})
        total = len(inst["_fake"]["events"])
        sc = ok(s.call("stream_events", {"deploymentId": "replayer", "maxSeconds": 30}))
        assert sc["status"] == "ready" and sc["eventCount"] == total, (sc, total)
        recs = sorted(streams()["closed"], key=lambda r: r["connection"])
        assert len(recs) == 2 and recs[1]["requestLastEventId"] == recs[0]["lastEventId"], recs
        assert recs[1]["sentIds"][:5] == recs[0]["sentIds"], "the server replayed from the start"


@suite.test
def signed_stream_signs_each_reconnect_again():
    reset()
    script = [{"event": "instanceUpdate", "data": {"status": 1}, "delay_ms": 1100},
              {"event": "resource", "data": {"resourceName": "db", "status": 2}, "delay_ms": 20},
              {"event": "finish", "data": {"status": 2, "endOfStream": True}, "delay_ms": 20}]
    with server("signature") as s:
        inst = FAKE.call("POST", "/_fake/instances", {"name": "signed", "script": script,
                                                      "knobs": {"drop_after": 1}})
        sc = ok(s.call("stream_events", {"deploymentId": "signed", "maxSeconds": 20}))
        assert sc["status"] == "ready" and sc["eventCount"] == 3, sc
        recs = sorted(streams()["closed"], key=lambda r: r["connection"])
        assert len(recs) == 2 and all(r["auth"] == "signature" for r in recs), recs
        assert int(recs[1]["requestDate"]) > int(recs[0]["requestDate"]), recs
        assert inst["instanceName"] == "signed"


@suite.test
def auto_rollback_is_followed_to_end_of_stream():
    reset()
    with server() as s:
        inst = FAKE.call("POST", "/_fake/instances", {"name": "rb", "autoRollback": True,
                                                      "knobs": dict(FAST, fail=True)})
        sc = ok(s.call("stream_events", {"deploymentId": inst["instanceId"], "maxSeconds": 30}))
        assert sc["eventCount"] == len(inst["_fake"]["events"]), sc
        assert sc["status"] == "failed" and sc["terminal"] is True, sc
        assert sc["providerStatus"] == "DEPLOY_ROLLBACK_COMPLETE", sc
        assert "rolled it back" in sc["failure"]["message"], sc
        assert "AccessDenied" in sc["failure"]["message"], sc
        got = ok(s.call("get_deployment", {"deploymentId": "rb"}))["deployment"]
        assert got["status"] == "failed" and got["providerStatus"] == "DEPLOY_ROLLBACK_COMPLETE"


@suite.test
def tail_logs_and_publish_point_elsewhere():
    reset()
    with server() as s:
        e = error(s.call("tail_logs", {"seconds": 1}))
        assert e["code"] == "unsupported" and "stream_events" in e["message"], e
        assert "Bluelink" in e["message"] and "no runtime" in e["message"], e
        # Publishing goes through deploy-mcp's approval gate (test_approval.py);
        # without an approver secret nobody could approve, so nothing is requested.
        e = error(s.call("request_publish", {"sourceDeploymentId": "changeset:x"}))
        assert e["code"] == "approver_secret_missing", e
        assert "DEPLOY_MCP_APPROVER_SECRET" in e["message"], e
        e = error(s.call("create_preview", {"artifact": "."}))
        assert e["code"] == "unsupported_argument" and "infra/project.blueprint.yml" in \
            e["message"], e
        tools = ok(s.call("list_targets"))["targets"][0]["capabilities"]
        assert "tail_logs" not in tools and "stream_events" in tools, tools


@suite.test
def get_and_list():
    reset()
    with server() as s:
        a = FAKE.call("POST", "/_fake/instances", {"name": "alpha"})
        FAKE.call("POST", "/_fake/instances", {"name": "beta", "knobs": {"fail": True}})
        dep = ok(s.call("create_preview", {"wait": True}))["deployment"]
        settled("alpha")
        settled("beta")
        got = ok(s.call("get_deployment", {"deploymentId": a["instanceId"]}))["deployment"]
        assert got["environment"] == "production" and got["status"] == "ready", got
        assert got["providerStatus"] == "DEPLOYED" and got["name"] == "alpha", got
        assert ok(s.call("get_deployment", {"deploymentId": "alpha"}))["deployment"]["id"] == \
            a["instanceId"]
        e = error(s.call("get_deployment", {"deploymentId": "nope"}))
        assert e["code"] == "not_found" and e["httpStatus"] == 404, e
        e = error(s.call("get_deployment", {"deploymentId": "changeset:unknown"}))
        assert e["code"] == "not_found", e

        lst = ok(s.call("list_deployments"))
        ids = [d["id"] for d in lst["deployments"]]
        assert ids[0] == dep["id"] and a["instanceId"] in ids and len(ids) == 3, lst
        assert "nextCursor" not in lst, lst
        prev = ok(s.call("list_deployments", {"environment": "preview"}))
        assert [d["id"] for d in prev["deployments"]] == [dep["id"]] and "note" in prev, prev
        prod = ok(s.call("list_deployments", {"environment": "production", "status": "failed"}))
        assert [d["name"] for d in prod["deployments"]] == ["beta"], prod
        page1 = ok(s.call("list_deployments", {"limit": 2}))
        page2 = ok(s.call("list_deployments", {"limit": 2, "cursor": page1["nextCursor"]}))
        both = [d["id"] for d in page1["deployments"] + page2["deployments"]]
        assert both == ids and "nextCursor" not in page2, (page1, page2)
        e = error(s.call("list_deployments", {"cursor": "garbage"}))
        assert e["code"] == "invalid_cursor", e


@suite.test
def upstream_errors_are_explained():
    reset(validation_diagnostics=[{"level": 1, "message": "resource ordersApi: unknown type"}])
    with server() as s:
        e = error(s.call("create_preview"))
        assert e["code"] == "validation_failed" and e["httpStatus"] == 422, e
        assert "resource ordersApi: unknown type" in e["message"], e
        FAKE.call("POST", "/_fake/knobs", {"validation_diagnostics": None, "errors": [
            {"path": "/v1/deployments/changes", "status": 503, "times": 1}]})
        e = error(s.call("create_preview", {"message": "retry"}))
        assert e["retryable"] is True and e["httpStatus"] == 503, e
        assert len([r for r in FAKE.requests() if r["method"] == "POST"]) == 2, \
            "a create must not be retried automatically"


try:
    suite.run()
finally:
    FAKE.close()
