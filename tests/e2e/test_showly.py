"""Every tool on Showly, end to end: the real binary over stdio against the fake
Showly server (tests/fakes/showly_fake.py), including the awkward parts —
dropped streams, replays without ids, invalid UTF-8, bursts, cancellation,
quota errors — and the rule that the token never leaks."""

import json
import os
import subprocess
import time

from harness import BIN, TOKEN, Fake, Server, Suite, structured

suite = Suite("showly")
fake = None


def config(**target):
    t = {"provider": "showly", "siteId": "site_e2e", "tokenEnv": "SHOWLY_TOKEN",
         "baseUrl": fake.url}
    t.update(target)
    return {"targets": {"web": t}}


def start(env=None, **target):
    e = {"SHOWLY_TOKEN": TOKEN}
    e.update(env or {})
    s = Server(config=config(**target), env=e, args=["--log-level", "debug"])
    s.initialize()
    servers.append(s)
    return s


servers = []


def seed(**body):
    """Creates a deployment directly on the fake (its script runs by the clock)."""
    body.setdefault("siteId", "site_e2e")
    return fake.call("POST", "/_fake/deployments", body)


def reset():
    fake.call("POST", "/_fake/reset", {})


def log_lines(s, token=None):
    """Every build-log line relayed as notifications/message, in order."""
    out = []
    for _, m in s.notes_where("notifications/message"):
        data = m["params"]["data"]
        if isinstance(data, dict) and "lines" in data:
            out.extend(l if isinstance(l, str) else l["text"] for l in data["lines"])
    return out


def progress_values(s, token):
    return [m["params"]["progress"] for _, m in s.notes_where("notifications/progress", token)]


@suite.test
def list_targets_reports_capabilities_and_readiness():
    s = start()
    sc = structured(s.call("list_targets"))
    [t] = sc["targets"]
    assert t["name"] == "web" and t["provider"] == "showly" and t["ready"] is True, t
    assert set(t["capabilities"]) >= {"create_preview", "request_publish", "stream_events",
                                      "tail_logs", "get_deployment", "list_deployments"}, t
    s2 = start(env={"SHOWLY_TOKEN": ""})
    [t] = structured(s2.call("list_targets"))["targets"]
    assert t["ready"] is False and "SHOWLY_TOKEN" in t["problem"], t
    r = s2.call("get_deployment", {"deploymentId": "dep_x"})
    assert r["isError"] and structured(r)["error"]["code"] == "missing_credentials", r


@suite.test
def create_preview_sends_idempotency_key_and_reuses_it():
    reset()
    s = start()
    args = {"branch": "main", "commitSha": "abc1234"}
    r1 = structured(s.call("create_preview", args))
    dep = r1["deployment"]
    assert dep["provider"] == "showly" and dep["target"] == "web"
    assert dep["environment"] == "preview" and dep["status"] == "queued", dep
    assert dep["id"].startswith("dep_") and dep["createdAt"], dep
    key = r1["idempotencyKey"]
    assert len(key) >= 16, key
    r2 = structured(s.call("create_preview", args))
    assert r2["idempotencyKey"] == key and r2["deployment"]["id"] == dep["id"], (r1, r2)
    r3 = structured(s.call("create_preview", {"branch": "other"}))
    assert r3["idempotencyKey"] != key and r3["deployment"]["id"] != dep["id"]
    r4 = structured(s.call("create_preview", {"branch": "main", "idempotencyKey": "my-key-000001"}))
    assert r4["idempotencyKey"] == "my-key-000001"
    posts = [q for q in fake.requests() if q["method"] == "POST" and q["path"].endswith("/deploy")]
    assert len(posts) == 4, posts
    keys = [q["headers"].get("idempotency-key") for q in posts]
    assert keys == [key, key, r3["idempotencyKey"], "my-key-000001"], keys
    assert all(q["headers"]["authorization"] == f"Bearer {TOKEN}" for q in posts)
    body = posts[0]["body"]
    assert (json.loads(body) if isinstance(body, str) else body) == {"environment": "preview", "commitSha": "abc1234",
                                            "branch": "main"}
    # the same key with different arguments is refused by the platform, clearly
    r5 = s.call("create_preview", {"branch": "changed", "idempotencyKey": "my-key-000001"})
    assert r5["isError"] and structured(r5)["error"]["code"] == "idempotency_conflict", r5


@suite.test
def stream_events_relays_live_progress_and_logs():
    reset()
    s = start()
    dep = seed(knobs={"slow_ms": 300})
    t0 = time.monotonic()
    rid = s.request_async("tools/call", {"name": "stream_events",
                                         "arguments": {"deploymentId": dep["id"]}},
                          progress="p1")
    first = s.wait_notes("notifications/progress", 1, token="p1")[0][0]
    resp = s.wait_response(rid)
    t_resp = max(t for t, _ in s.responses[json.dumps(rid)])
    assert first < t_resp - 0.8, "progress must arrive while the call runs, not with the result"
    sc = structured(resp["result"])
    assert sc["status"] == "ready" and sc["terminal"] is True, sc
    assert sc["url"].endswith(".preview.showly.app"), sc
    assert sc["eventCount"] == 6 and sc["logLineCount"] == 10, sc
    assert len(sc["lastLines"]) == 10 and sc["lastLines"][-1] == "Deploying to edge", sc
    assert sc["cursor"] and sc["deploymentId"] == dep["id"] and sc["durationMs"] > 0
    vals = progress_values(s, "p1")
    assert vals == sorted(set(vals)) and len(vals) >= 3, vals
    msgs = [m["params"]["message"] for _, m in s.notes_where("notifications/progress", "p1")]
    assert any(m.startswith("building") for m in msgs) and any("ready" in m for m in msgs), msgs
    notes = s.notes_where("notifications/message")
    assert notes and all(m["params"]["logger"] == "deploy-mcp/web" for _, m in notes)
    assert all(m["params"]["data"]["deploymentId"] == dep["id"] for _, m in notes)
    assert log_lines(s)[0] == "Cloning repository (branch main)"
    # nothing is relayed after the result
    after = [t for t, m in s.notes if t > t_resp and m.get("method", "").startswith("notifications/")]
    assert not after, after


@suite.test
def logging_level_is_honoured():
    reset()
    s = start()
    assert "result" in s.request("logging/setLevel", {"level": "warning"})
    dep = seed()
    sc = structured(s.call("stream_events", {"deploymentId": dep["id"]}))
    assert sc["logLineCount"] == 10
    assert not s.notes_where("notifications/message"), "info lines must not pass a warning level"


@suite.test
def dropped_stream_resumes_without_gap_or_duplicate():
    for knobs in ({"drop_every": 2}, {"drop_after": 3, "ids": False},
                  {"drop_after": 3, "drop_partial": True, "crlf": True, "multiline": True}):
        reset()
        s = start()
        dep = seed(knobs=dict(knobs, slow_ms=20))
        sc = structured(s.call("stream_events", {"deploymentId": dep["id"]}, progress="d"))
        assert sc["status"] == "ready" and sc["eventCount"] == 6, (knobs, sc)
        lines = log_lines(s)
        assert len(lines) == 10 and len(set(lines)) == 10, (knobs, lines)
        assert sc["lastLines"] == lines, knobs
        streams = fake.call("GET", "/_fake/streams")
        conns = [c for c in streams["closed"] if c["deploymentId"] == dep["id"]]
        assert len(conns) >= 2, (knobs, conns)
        if knobs.get("ids", True) and "drop_every" in knobs:
            assert conns[1]["requestLastEventId"] == "2", conns


@suite.test
def a_stream_that_never_progresses_backs_off_instead_of_spinning():
    # No ids and a drop after every 2 events: each reconnect replays the same
    # two events, so nothing new ever arrives. The server must back off.
    reset()
    s = start()
    dep = seed(knobs={"drop_every": 2, "ids": False, "slow_ms": 10})
    sc = structured(s.call("stream_events", {"deploymentId": dep["id"], "maxSeconds": 3}))
    assert sc["terminal"] is False and sc["eventCount"] == 2, sc
    conns = [c for c in fake.call("GET", "/_fake/streams")["closed"]
             if c["deploymentId"] == dep["id"]]
    assert 2 <= len(conns) <= 12, len(conns)


@suite.test
def cursor_resumes_exactly_after_the_last_event():
    reset()
    s = start()
    dep = seed(knobs={"slow_ms": 700})
    a = structured(s.call("stream_events", {"deploymentId": dep["id"], "maxSeconds": 2}))
    assert a["terminal"] is False and a["cursor"], a
    assert 1 <= a["eventCount"] < 6, a
    n_first = a["logLineCount"]
    b = structured(s.call("stream_events", {"deploymentId": dep["id"], "cursor": a["cursor"]}))
    assert b["terminal"] is True and b["status"] == "ready", b
    assert a["eventCount"] + b["eventCount"] == 6, (a, b)
    assert n_first + b["logLineCount"] == 10, (a, b)
    lines = log_lines(s)
    assert len(lines) == 10 and len(set(lines)) == 10, lines
    r = s.call("stream_events", {"deploymentId": dep["id"], "cursor": "garbage!"})
    assert r["isError"] and structured(r)["error"]["code"] == "invalid_cursor", r


@suite.test
def cancellation_closes_upstream_and_sends_no_response():
    reset()
    s = start()
    dep = seed(knobs={"hang": True, "keepalive_ms": 200})
    rid = s.request_async("tools/call", {"name": "stream_events",
                                         "arguments": {"deploymentId": dep["id"]}}, progress="c")
    s.wait_notes("notifications/progress", 1, token="c")
    assert fake.call("GET", "/_fake/streams")["open"] == 1
    t0 = time.time()
    s.notify("notifications/cancelled", {"requestId": rid, "reason": "user"})
    closed = None
    while time.time() - t0 < 3:
        st = fake.call("GET", "/_fake/streams")
        done = [c for c in st["closed"] if c["deploymentId"] == dep["id"]]
        if done:
            closed = done[0]
            break
        time.sleep(0.05)
    assert closed and closed["reason"] == "client_closed", closed
    assert closed["closedAt"] - t0 < 1.0, closed["closedAt"] - t0
    assert "result" in s.request("ping")
    time.sleep(0.5)
    assert json.dumps(rid) not in s.responses, "a cancelled call must not be answered"
    # a second, concurrent call is not disturbed by a long one
    dep2 = seed(knobs={"hang": True})
    long_id = s.request_async("tools/call", {"name": "stream_events",
                                             "arguments": {"deploymentId": dep2["id"]}})
    t1 = time.monotonic()
    assert "result" in s.request("ping")
    got = structured(s.call("get_deployment", {"deploymentId": dep["id"]}))
    assert got["deployment"]["id"] == dep["id"] and time.monotonic() - t1 < 2
    s.notify("notifications/cancelled", {"requestId": long_id})


@suite.test
def shutdown_with_calls_in_flight_is_clean():
    for how in ("eof", "sigterm", "sigint"):
        reset()
        s = start()
        dep = seed(knobs={"hang": True, "keepalive_ms": 200})
        s.request_async("tools/call", {"name": "stream_events",
                                       "arguments": {"deploymentId": dep["id"]}}, progress="x")
        s.wait_notes("notifications/progress", 1, token="x")
        t0 = time.monotonic()
        if how == "eof":
            s.close_stdin()
        else:
            s.proc.send_signal(15 if how == "sigterm" else 2)
        assert s.wait_exit(2) == 0, how
        assert time.monotonic() - t0 < 2, how
        st = fake.call("GET", "/_fake/streams")
        assert st["open"] == 0, (how, st)
        assert "open handles" not in s.stderr(), s.stderr()


@suite.test
def burst_of_20000_lines_arrives_once_in_few_notifications():
    reset()
    s = start()
    dep = seed(knobs={"burst_lines": 20000, "burst_events": 200})
    sc = structured(s.call("stream_events", {"deploymentId": dep["id"]}, progress="b",
                           timeout=120))
    assert sc["logLineCount"] == 20000 and sc["status"] == "ready", sc
    lines = log_lines(s)
    assert lines == [f"burst line {i}/20000" for i in range(1, 20001)], (len(lines), lines[:3])
    notes = s.notes_where("notifications/message")
    assert len(notes) <= 400, len(notes)
    assert len(sc["lastLines"]) == 50 and sc["lastLines"][-1] == "burst line 20000/20000"
    vals = progress_values(s, "b")
    assert vals == sorted(set(vals)), vals


@suite.test
def invalid_utf8_is_repaired_not_dropped():
    reset()
    s = start()
    dep = seed(knobs={"invalid_utf8": True})
    sc = structured(s.call("stream_events", {"deploymentId": dep["id"]}))
    assert sc["logLineCount"] == 10, sc
    lines = log_lines(s)
    assert lines[0] == "Cloning repository (branch main) \ufffd\ufffd", lines[0]
    assert any(l.endswith(" \ufffd") for l in lines), lines


@suite.test
def oversized_upstream_line_is_reported_and_stream_goes_on():
    reset()
    s = start()
    dep = seed(knobs={"oversize": True})
    sc = structured(s.call("stream_events", {"deploymentId": dep["id"]}))
    assert sc["status"] == "ready" and sc["terminal"], sc
    assert any("oversized" in l for l in log_lines(s)), log_lines(s)


@suite.test
def failed_build_reports_failure():
    reset()
    s = start()
    dep = seed(knobs={"fail": True})
    sc = structured(s.call("stream_events", {"deploymentId": dep["id"]}))
    assert sc["status"] == "failed" and sc["terminal"], sc
    assert sc["failure"]["code"] == "build_failed" and "exited" in sc["failure"]["message"], sc


@suite.test
def create_preview_wait_follows_the_build():
    reset()
    s = start()
    sc = structured(s.call("create_preview", {"branch": "main", "wait": True, "maxSeconds": 30},
                           progress="w"))
    assert sc["deployment"]["status"] == "ready" and sc["deployment"]["url"], sc
    assert sc["stream"]["terminal"] is True and sc["stream"]["eventCount"] == 6, sc
    assert progress_values(s, "w"), "wait mode relays progress"


@suite.test
def tail_logs_filters_and_caps():
    reset()
    s = start()
    dep = seed()
    time.sleep(0.8)
    sc = structured(s.call("tail_logs", {"deploymentId": dep["id"], "maxLines": 4}))
    assert sc["count"] == 4 and sc["dropped"] == 6, sc
    assert all(l["level"] == "info" and l["text"] for l in sc["lines"]), sc
    sc = structured(s.call("tail_logs", {"deploymentId": dep["id"], "filter": "npm"}))
    assert [l["text"] for l in sc["lines"]] == ["npm ci"], sc
    sc = structured(s.call("tail_logs", {"deploymentId": dep["id"], "level": "error"}))
    assert sc["count"] == 0, sc
    r = s.call("tail_logs", {})
    assert r["isError"] and "deploymentId" in r["content"][0]["text"], r


@suite.test
def get_and_list_deployments():
    reset()
    s = start()
    ids = [seed(status="ready")["id"] for _ in range(3)]
    got = structured(s.call("get_deployment", {"deploymentId": ids[0]}))["deployment"]
    assert got["id"] == ids[0] and got["status"] == "ready" and got["url"], got
    page1 = structured(s.call("list_deployments", {"limit": 2}))
    assert len(page1["deployments"]) == 2 and page1["nextCursor"], page1
    page2 = structured(s.call("list_deployments", {"limit": 2, "cursor": page1["nextCursor"]}))
    seen = [d["id"] for d in page1["deployments"] + page2["deployments"]]
    assert sorted(seen) == sorted(ids) and "nextCursor" not in page2, (seen, page2)
    r = s.call("get_deployment", {"deploymentId": "dep_missing"})
    err = structured(r)["error"]
    assert r["isError"] and err["code"] == "deployment_not_found" and err["httpStatus"] == 404
    assert err["provider"] == "showly" and err["retryable"] is False


@suite.test
def request_publish_returns_approval_url_and_never_approves():
    reset()
    s = start()
    src = seed(status="ready")
    sc = structured(s.call("request_publish", {"sourceDeploymentId": src["id"], "notes": "v1"}))
    req = sc["request"]
    assert req["id"].startswith("apr_") and req["webApprovalUrl"].startswith("https://"), req
    assert req["status"] == "pending_approval" and req["sourceDeploymentId"] == src["id"]
    assert req["target"] == "web" and req["provider"] == "showly"
    ap = fake.call("GET", "/_fake/approvals")
    assert ap["decisionCalls"] == [], "deploy-mcp must never decide an approval"
    assert all(a["status"] == "pending" for a in ap["approvals"])
    # the id-only shape falls back to approvalUrlTemplate
    fake.call("POST", "/_fake/knobs", {"approval_shape": "error"})
    s2 = start(approvalUrlTemplate="https://dash.example/approve/{requestId}")
    src2 = seed(status="ready")
    r = s2.call("request_publish", {"sourceDeploymentId": src2["id"]})
    if not r.get("isError"):
        assert structured(r)["request"]["webApprovalUrl"], r
    q = s.call("request_publish", {"sourceDeploymentId": seed()["id"]})
    assert q["isError"] and structured(q)["error"]["code"] == "source_not_ready", q


@suite.test
def quota_exceeded_is_not_retried_and_says_so():
    reset()
    fake.call("POST", "/_fake/knobs", {"quota_exceeded": True})
    s = start()
    r = s.call("create_preview", {"branch": "main"})
    err = structured(r)["error"]
    assert r["isError"] and err["code"] == "build_quota_exceeded", r
    assert err["retryable"] is False and err["httpStatus"] == 429
    assert "will not clear" in r["content"][0]["text"], r
    posts = [q for q in fake.requests() if q["path"].endswith("/deploy")]
    assert len(posts) == 1, "build_quota_exceeded must never be retried"


@suite.test
def wrong_token_and_bad_arguments_are_tool_errors():
    reset()
    s = start(env={"SHOWLY_TOKEN": "sk_live_wrong_token_value_1234"})
    r = s.call("get_deployment", {"deploymentId": "dep_x"})
    err = structured(r)["error"]
    assert r["isError"] and err["httpStatus"] == 401 and "SHOWLY_TOKEN" in err["message"], r
    assert "sk_live_wrong" not in json.dumps(r)
    s = start()
    for args in ({}, {"deploymentId": 5}, {"deploymentId": "x", "bogus": 1},
                 {"deploymentId": "x", "maxSeconds": 0}, {"deploymentId": "x", "maxSeconds": 3601},
                 {"deploymentId": "x", "target": "nope"}):
        r = s.call("stream_events", args)
        assert r["isError"], (args, r)
        assert structured(r)["error"]["code"] in ("invalid_arguments", "unknown_target"), r


@suite.test
def unreachable_platform_is_a_clear_retryable_error():
    s = Server(config={"targets": {"web": {"provider": "showly", "siteId": "s",
                                           "baseUrl": "http://127.0.0.1:9"}}},
               env={"SHOWLY_TOKEN": TOKEN})
    servers.append(s)
    s.initialize()
    r = s.call("get_deployment", {"deploymentId": "dep_x"}, timeout=60)
    err = structured(r)["error"]
    assert r["isError"] and err["code"] == "network_error" and err["retryable"] is True, r


@suite.test
def check_and_config_errors():
    reset()
    tmp = Server(config=config())
    servers.append(tmp)
    path = os.path.join(tmp.tmp, "config.json")
    env = {k: v for k, v in os.environ.items() if k != "SHOWLY_TOKEN"}
    out = subprocess.run([BIN, "--check", "--config", path], env=env, capture_output=True,
                         text=True, timeout=5)
    assert out.returncode == 1 and "SHOWLY_TOKEN" in out.stdout, out
    out = subprocess.run([BIN, "--check", "--config", path], env=dict(env, SHOWLY_TOKEN=TOKEN),
                         capture_output=True, text=True, timeout=5)
    assert out.returncode == 0 and TOKEN not in out.stdout + out.stderr, out
    # A caFile that does not exist (or is a directory) is reported by --check,
    # not left to the first TLS handshake.
    for ca, why in ((os.path.join(tmp.tmp, "missing.pem"), "No such file"),
                    (tmp.tmp, "not a regular file")):
        withca = os.path.join(tmp.tmp, "ca.json")
        with open(withca, "w") as f:
            json.dump({"targets": {"web": {"provider": "showly", "siteId": "s",
                                           "caFile": ca}}}, f)
        out = subprocess.run([BIN, "--check", "--config", withca],
                             env=dict(env, SHOWLY_TOKEN=TOKEN), capture_output=True,
                             text=True, timeout=5)
        assert out.returncode == 1 and "NOT READY" in out.stdout, out
        assert "caFile" in out.stdout and why in out.stdout and ca in out.stdout, out
    bad = os.path.join(tmp.tmp, "bad.json")
    with open(bad, "w") as f:
        json.dump({"targets": {"web": {"provider": "shwoly", "siteId": "x"}}}, f)
    out = subprocess.run([BIN, "--config", bad], capture_output=True, text=True, timeout=5,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 1, out
    assert bad in out.stderr and '"web"' in out.stderr and "provider" in out.stderr, out.stderr
    with open(bad, "w") as f:
        json.dump({"targets": {"web": {"provider": "showly"}}}, f)
    out = subprocess.run([BIN, "--config", bad], capture_output=True, text=True, timeout=5,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 1 and "siteId" in out.stderr and '"web"' in out.stderr, out.stderr


@suite.test
def token_never_appears_in_output():
    # Runs last: every server of this suite ran with --log-level debug.
    for s in servers:
        s.close_stdin()
        s.wait_exit(5)
        s.reader.join(2)
        blob = s.stdout_bytes().decode(errors="replace") + s.stderr()
        assert TOKEN not in blob, "the token leaked into stdout or stderr"
        assert "open handles" not in blob, "the loop did not close cleanly"
        assert "sk_live_wrong_token" not in blob


if __name__ == "__main__":
    fake = Fake("showly")
    try:
        suite.run()
    finally:
        for s in servers:
            s.close()
        fake.close()
