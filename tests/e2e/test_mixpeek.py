"""Mixpeek Apps ("Canvas") end to end: the real binary over stdio against the
fake Mixpeek server (tests/fakes/mixpeek_fake.py). Covers the bundle deploy
(zip → signed upload → staging deploy), the deploy-log stream that replays all
earlier lines on every reconnect (every line exactly once, across drops and
across cursor resumption), the final status from GET deploy after `done`,
tail_logs levels and filters, get/list (versions merged with this process's
deploys), the 403/429 error envelopes, and that neither the API key nor the
upload signature ever reaches stdout or stderr."""

import os
import socket
import time
import zipfile

from harness import TOKEN, Fake, Server, Suite, structured

suite = Suite("mixpeek")
fake = None
servers = []
ARTIFACT_ROOT = None
WRONG_KEY = "mxp_wrong_key_value_98765"
SIGNATURES = []   # of every signed upload URL the fake issued (reset clears its log)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config(**target):
    t = {"provider": "mixpeek", "appId": "app_test", "baseUrl": fake.url,
         "namespace": "ns_e2e", "artifactRoot": ARTIFACT_ROOT}
    t.update(target)
    # A free port for the approval page, so parallel suites do not compete for 8788.
    return {"targets": {"canvas": t}, "approval": {"listen": "127.0.0.1:%d" % free_port()}}


def start(env=None, **target):
    e = {"MIXPEEK_API_KEY": TOKEN}
    e.update(env or {})
    s = Server(config=config(**target), env=e, args=["--log-level", "debug"])
    s.initialize()
    # Debug lines (the fake's script has some) must reach us too.
    assert "result" in s.request("logging/setLevel", {"level": "debug"})
    servers.append(s)
    return s


def reset():
    fake.call("POST", "/_fake/reset", {})


def seed(**body):
    return fake.call("POST", "/_fake/deploys", body)


def script_of(dep_id):
    return fake.call("GET", f"/_fake/deploys/{dep_id}")["_fake"]["lines"]


def requests(route=None):
    return [r for r in fake.requests() if route is None or r["route"] == route]


def log_lines(notes):
    out = []
    for _, m in notes:
        if m.get("method") != "notifications/message":
            continue
        data = m["params"]["data"]
        if isinstance(data, dict) and "lines" in data:
            out.extend(x if isinstance(x, str) else x["text"] for x in data["lines"])
    return out


def err_of(result):
    assert result.get("isError"), result
    return structured(result)["error"]


def iso_ms(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(ts))) + \
        ".%03dZ" % round((ts - int(ts)) * 1000)


@suite.test
def create_preview_zips_uploads_and_deploys_to_staging():
    reset()
    app = os.path.join(ARTIFACT_ROOT, "site")
    os.makedirs(os.path.join(app, "assets"), exist_ok=True)
    for rel, text in (("index.html", "<h1>hi</h1>"), ("canvas.json", '{"pages":3}'),
                      ("assets/logo.svg", "<svg/>")):
        with open(os.path.join(app, rel), "w") as f:
            f.write(text)
    s = start()
    sc = structured(s.call("create_preview", {"artifact": "site", "message": "first cut"}))
    dep = sc["deployment"]
    assert dep["id"].startswith("dpl_") and dep["provider"] == "mixpeek", dep
    assert dep["environment"] == "preview" and dep["providerEnvironment"] == "staging", dep
    assert dep["status"] == "queued" and dep["providerStatus"] == "queued", dep

    [ask] = requests("upload-url")
    assert ask["body"] == {"filename": "site.zip", "content_type": "application/zip"}, ask
    assert ask["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert ask["headers"]["x-namespace"] == "ns_e2e"
    [put] = requests("upload")
    SIGNATURES.append(put["query"]["X-Amz-Signature"])
    assert put["method"] == "PUT" and put["status"] == 200, put
    assert "authorization" not in put["headers"] and "x-namespace" not in put["headers"], put
    assert put["headers"]["content-type"] == "application/zip"
    [up] = fake.call("GET", "/_fake/uploads")
    assert up["validZip"] is True, up
    files = [n for n in up["entries"] if not n.endswith("/")]
    assert files == ["assets/logo.svg", "canvas.json", "index.html"], files  # no prefix
    [post] = requests("deploy")
    assert post["body"] == {"message": "first cut", "environment": "staging",
                            "source": "cli_upload", "bundle_s3_key": up["bundle_s3_key"]}, post
    assert post["headers"]["x-namespace"] == "ns_e2e"

    # A repeat is answered by deploy-mcp itself: no second upload or deploy.
    again = structured(s.call("create_preview", {"artifact": "site", "message": "first cut"}))
    assert again["deployment"]["id"] == dep["id"] and again.get("reused") is True, again
    assert len(requests("deploy")) == 1 and len(requests("upload")) == 1

    e = err_of(s.call("create_preview", {"message": "no bundle"}))
    assert e["code"] == "artifact_required" and "artifact" in e["message"], e

    time.sleep(1.0)  # the default script takes ≈0.8 s
    got = structured(s.call("get_deployment", {"deploymentId": dep["id"]}))["deployment"]
    assert got["status"] == "ready" and got["providerStatus"] == "complete", got
    assert got["message"] == "first cut" and got["createdAt"].endswith("Z"), got
    listed = structured(s.call("list_deployments"))
    mine = [d for d in listed["deployments"] if d["id"] == dep["id"]]
    assert len(mine) == 1 and mine[0]["kind"] == "deploy", listed
    assert mine[0]["status"] == "ready" and mine[0]["statusKnown"] is True, mine
    assert "no API that lists deploys" in listed["note"], listed


@suite.test
def stream_events_with_drops_on_every_connection_delivers_each_line_once():
    reset()
    d = seed(knobs={"lines": 40, "line_delay_ms": 15, "drop_every": 7, "drop_partial": True,
                    "invalid_utf8": True})
    want = script_of(d["deploy_id"])
    s = start()
    r = s.call("stream_events", {"deploymentId": d["deploy_id"], "maxSeconds": 30},
               progress="p1")
    sc = structured(r)
    got = log_lines(s.notes)
    assert got == want, (len(got), len(want), got[:5])
    assert sc["status"] == "ready" and sc["terminal"] is True, sc
    assert sc["providerStatus"] == "complete", sc
    assert sc["logLineCount"] == 40 and sc["eventCount"] == 40, sc
    assert sc["lastLines"] == want, sc["lastLines"]
    closed = fake.call("GET", "/_fake/streams")["closed"]
    assert sum(c["reason"] == "dropped" for c in closed) >= 4, closed
    assert closed[-1]["reason"] == "done", closed[-1]
    # the final status came from GET deploy after `done`
    assert requests("get-deploy"), "no GET deploy after the stream ended"
    prog = [m["params"]["progress"] for _, m in s.notes_where("notifications/progress", "p1")]
    assert prog and all(b > a for a, b in zip(prog, prog[1:])), prog


@suite.test
def cursor_resumption_gives_every_line_exactly_once():
    reset()
    d = seed(knobs={"lines": 30, "line_delay_ms": 70, "drop_every": 4})
    want = script_of(d["deploy_id"])
    s = start()
    first = structured(s.call("stream_events", {"deploymentId": d["deploy_id"],
                                                "maxSeconds": 1}))
    split = len(s.notes)
    assert first["terminal"] is False and first["cursor"], first
    part1 = log_lines(s.notes[:split])
    assert 0 < len(part1) < 30 and first["logLineCount"] == len(part1), (len(part1), first)
    second = structured(s.call("stream_events", {"deploymentId": d["deploy_id"],
                                                 "cursor": first["cursor"], "maxSeconds": 30}))
    part2 = log_lines(s.notes[split:])
    assert part1 + part2 == want, (len(part1), len(part2))
    assert second["terminal"] is True and second["status"] == "ready", second
    assert first["logLineCount"] + second["logLineCount"] == 30, second
    # tail_logs over the same stream, resumed from the first cursor, agrees
    tail = structured(s.call("tail_logs", {"deploymentId": d["deploy_id"],
                                           "cursor": first["cursor"], "seconds": 10}))
    assert [x["text"] for x in tail["lines"]] == part2, tail
    # A cursor taken after `done` ends at once instead of reconnecting forever.
    opened = fake.call("GET", "/_fake/streams")["opened"]
    t0 = time.monotonic()
    third = structured(s.call("stream_events", {"deploymentId": d["deploy_id"],
                                                "cursor": second["cursor"], "maxSeconds": 30}))
    assert time.monotonic() - t0 < 3, "a finished stream was reconnected to"
    assert third["terminal"] is True and third["status"] == "ready", third
    assert third["logLineCount"] == 0 and third["eventCount"] == 0, third
    assert fake.call("GET", "/_fake/streams")["opened"] == opened, "it reconnected"


@suite.test
def burst_arrives_once_in_few_notifications_and_wait_follows_create():
    reset()
    fake.call("POST", "/_fake/knobs", {"next_deploy": {"knobs": {"burst": 5000}}})
    app = os.path.join(ARTIFACT_ROOT, "bundle.zip")
    with zipfile.ZipFile(app, "w") as z:
        z.writestr("index.html", "<h1>zip</h1>")
    s = start()
    sc = structured(s.call("create_preview", {"artifact": app, "wait": True,
                                              "maxSeconds": 30}))
    assert sc["deployment"]["status"] == "ready", sc["deployment"]
    st = sc["stream"]
    assert st["terminal"] is True and st["logLineCount"] == 5000, st
    assert st["lastLines"][-1] == "burst line 5000/5000", st["lastLines"][-1:]
    got = log_lines(s.notes)
    assert got == ["burst line %d/5000" % i for i in range(1, 5001)], len(got)
    msgs = [m for _, m in s.notes if m.get("method") == "notifications/message"]
    assert len(msgs) < 200, f"{len(msgs)} notifications for 5000 lines: not chunked"
    [up] = fake.call("GET", "/_fake/uploads")
    assert up["filename"] == "bundle.zip" and up["entries"] == ["index.html"], up
    SIGNATURES.extend(r["query"]["X-Amz-Signature"] for r in requests("upload"))


@suite.test
def tail_logs_levels_filters_and_timestamps():
    reset()
    d = seed(status="failed")
    dep_id = d["deploy_id"]
    want = script_of(dep_id)
    stamps = d["_fake"]["timestamps"]
    s = start()
    sc = structured(s.call("tail_logs", {"deploymentId": dep_id, "seconds": 10}))
    assert [x["text"] for x in sc["lines"]] == want, sc
    assert all(x["source"] == "deploy" for x in sc["lines"])
    assert [x["ts"] for x in sc["lines"]] == [iso_ms(t) for t in stamps], sc["lines"][:2]
    levels = {x["text"].split(" ")[0]: x["level"] for x in sc["lines"]}
    assert levels["WARN"] == "warn" and levels["ERROR"] == "error" and \
        levels["DEBUG"] == "debug" and levels["Building"] == "info", levels
    warn = structured(s.call("tail_logs", {"deploymentId": dep_id, "level": "warn"}))
    assert [x["level"] for x in warn["lines"]] == ["warn", "error"], warn
    flt = structured(s.call("tail_logs", {"deploymentId": dep_id, "filter": "Build"}))
    assert [x["text"] for x in flt["lines"]] == ["Building canvas",
                                                  "Build failed with exit code 1"], flt
    capped = structured(s.call("tail_logs", {"deploymentId": dep_id, "maxLines": 3}))
    assert capped["count"] == 3 and capped["dropped"] == len(want) - 3, capped
    e = err_of(s.call("tail_logs", {}))
    assert e["code"] == "deployment_id_required", e
    ev = structured(s.call("stream_events", {"deploymentId": dep_id}))
    assert ev["status"] == "failed" and ev["failure"]["message"] == \
        "Build failed with exit code 1", ev


@suite.test
def get_and_list_deployments():
    reset()
    done = seed(status="complete", environment="production", message="live one")
    fake.call("POST", "/_fake/versions", {"app_id": "app_test", "message": "old upload",
                                          "created_at": "2024-01-02T03:04:05Z"})
    s = start()
    got = structured(s.call("get_deployment", {"deploymentId": done["deploy_id"]}))
    dep = got["deployment"]
    assert dep["status"] == "ready" and dep["environment"] == "production", dep
    assert dep["message"] == "live one" and dep["createdAt"].endswith("Z"), dep
    building = seed(knobs={"hang": True, "lines": 2})
    time.sleep(0.4)
    dep = structured(s.call("get_deployment", {"deploymentId": building["deploy_id"]}))
    assert dep["deployment"]["status"] == "building", dep
    e = err_of(s.call("get_deployment", {"deploymentId": "dpl_nope"}))
    assert e["code"] == "NotFoundError" and e["httpStatus"] == 404 and not e["retryable"], e

    for i in range(4):
        fake.call("POST", "/_fake/versions", {"app_id": "app_test", "message": f"v{i}",
                                              "created_at": f"2024-02-0{i + 1}T00:00:00Z"})
    pages, cursor = [], None
    while True:
        args = {"limit": 2}
        if cursor:
            args["cursor"] = cursor
        sc = structured(s.call("list_deployments", args))
        pages.append(sc["deployments"])
        cursor = sc.get("nextCursor")
        if not cursor:
            break
    flat = [d for p in pages for d in p]
    assert len(pages) == 3 and all(len(p) == 2 for p in pages), pages
    ids = [d["id"] for d in flat]
    assert len(set(ids)) == 6 and ids[0] == done["deploy_id"], ids
    created = [d.get("createdAt", "") for d in flat]
    assert created == sorted(created, reverse=True), created
    old = [d for d in flat if d.get("message") == "old upload"][0]
    assert old["kind"] == "version" and old["statusKnown"] is False, old
    assert old["providerStatus"] == "unknown" and old["status"] == "queued", old
    # no version reports a status, so none is known to be ready
    ready = structured(s.call("list_deployments", {"status": "ready"}))
    assert ready["deployments"] == [], ready
    prod = structured(s.call("list_deployments", {"environment": "production"}))
    assert [d["id"] for d in prod["deployments"]] == [done["deploy_id"]], prod
    e = err_of(s.call("list_deployments", {"cursor": "garbage"}))
    assert e["code"] == "invalid_cursor", e

    # Publishing goes through deploy-mcp's approval gate (tests/e2e/test_approval.py);
    # without an approver secret nobody could approve, so nothing is requested.
    e = err_of(s.call("request_publish", {"sourceDeploymentId": done["deploy_id"]}))
    assert e["code"] == "approver_secret_missing", e
    assert "DEPLOY_MCP_APPROVER_SECRET" in e["message"], e


@suite.test
def auth_failures_are_403_and_name_the_variable_not_the_key():
    reset()
    d = seed(status="complete")
    s = start(env={"MIXPEEK_API_KEY": WRONG_KEY})
    for tool, args in (("get_deployment", {"deploymentId": d["deploy_id"]}),
                       ("stream_events", {"deploymentId": d["deploy_id"], "maxSeconds": 10}),
                       ("list_deployments", {})):
        e = err_of(s.call(tool, args))
        assert e["code"] == "UnauthorizedError" and e["httpStatus"] == 403, (tool, e)
        assert "MIXPEEK_API_KEY" in e["message"] and WRONG_KEY not in e["message"], e
        assert e["retryable"] is False, e


@suite.test
def rate_limits_are_reported_not_retried():
    reset()
    d = seed(status="complete")
    fake.call("POST", "/_fake/knobs", {"rate_limits": {"get-deploy": 0, "versions": 1}})
    s = start()
    e = err_of(s.call("get_deployment", {"deploymentId": d["deploy_id"]}))
    assert e["code"] == "TooManyRequestsError" and e["httpStatus"] == 429, e
    assert e["retryable"] is True and "minute" in e["message"], e
    assert len(requests("get-deploy")) == 1, "a 429 without Retry-After was retried"
    assert "deployments" in structured(s.call("list_deployments"))
    e = err_of(s.call("list_deployments"))
    assert e["code"] == "TooManyRequestsError", e
    fake.call("POST", "/_fake/knobs", {"rate_limits": {},
                                       "errors": [{"route": "versions", "status": 422,
                                                   "message": "bad filter",
                                                   "details": [{"loc": ["query", "x"]}]}]})
    e = err_of(s.call("list_deployments"))
    assert e["code"] == "ValidationError" and "query" in e["message"], e


@suite.test
def secrets_never_appear_in_output():
    # Runs last: every server of this suite ran with --log-level debug.
    sigs = SIGNATURES + [r["query"].get("X-Amz-Signature") for r in fake.requests()
                         if r["route"] == "upload"]
    assert sigs, "no upload happened in this suite"
    for s in servers:
        s.close_stdin()
        s.wait_exit(5)
        s.reader.join(2)
        blob = s.stdout_bytes().decode(errors="replace") + s.stderr()
        assert TOKEN not in blob, "the API key leaked into stdout or stderr"
        assert WRONG_KEY not in blob, "the wrong API key leaked into stdout or stderr"
        assert "X-Amz-Signature" not in blob, "the signed upload URL leaked"
        for sig in sigs:
            assert sig and sig not in blob, "the upload signature leaked"
        assert "open handles" not in blob, "the loop did not close cleanly"
        for word in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert word not in blob, f"sanitizer report in stderr: {word}"


if __name__ == "__main__":
    import tempfile
    fake = Fake("mixpeek")
    ARTIFACT_ROOT = tempfile.mkdtemp(prefix="dmcp-mx-root-")
    try:
        suite.run()
    finally:
        for s in servers:
            s.close()
        fake.close()
        import shutil
        shutil.rmtree(ARTIFACT_ROOT, ignore_errors=True)
