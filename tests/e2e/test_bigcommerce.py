#!/usr/bin/env python3
"""End-to-end: the real deploy-mcp binary over stdio against the fake
BigCommerce Infrastructure Hosting API (tests/fakes/bigcommerce_fake.py).

Covers create_preview from a directory and from a .zip (and the artifactRoot
confinement), following a deployment across server-side closes without
duplicates or gaps (live, with wait, and resumed from a cursor), readable
failure codes, the runtime-log tail across closes with filters, get/list
from local records, 401/403/409/429 messages, request_publish being
unsupported, and that neither the token nor a signed upload URL's signature
ever reaches stdout or stderr. Python 3 stdlib only; about 20 s."""

import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TOKEN, Fake, Server, Suite, structured  # noqa: E402

STORE = "abc123"
PROJECT = "proj-e2e-0001"
TOKEN_ENV = "BC_E2E_TOKEN"
API = "/stores/%s/v3" % STORE
STEP_MS = 250          # between snapshots: ~2.3 s per deployment
CLOSE_MS = 700         # the fake's "30 s" close, shortened

suite = Suite("bigcommerce")
fake = Fake("bigcommerce")
root = tempfile.mkdtemp(prefix="dmcp-bc-root-")
outside = tempfile.mkdtemp(prefix="dmcp-bc-outside-")
SERVERS = []
STATE = {}


def ctl(method, path, body=None):
    return fake.call(method, "/_fake" + path, body if body is not None else {})


def make_artifacts():
    dist = os.path.join(root, "dist")
    os.makedirs(os.path.join(dist, "assets", "img"))
    os.makedirs(os.path.join(dist, "empty"))
    with open(os.path.join(dist, "index.html"), "w") as f:
        f.write("<html>catalyst</html>\n")
    with open(os.path.join(dist, "assets", "app.js"), "w") as f:
        f.write("console.log('hi');\n" * 2000)
    with open(os.path.join(dist, "assets", "img", "logo.bin"), "wb") as f:
        f.write(os.urandom(20000))
    open(os.path.join(dist, "assets", "blank.txt"), "w").close()
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("output/index.html", "<html>from a zip</html>")
        z.writestr("output/worker.js", "export default {}")
    with open(os.path.join(root, "bundle.zip"), "wb") as f:
        f.write(b.getvalue())
    with open(os.path.join(outside, "secret.zip"), "wb") as f:
        f.write(b.getvalue())
    os.symlink(outside, os.path.join(root, "escape"))


def config(base=None):
    return {"targets": {"store": {
        "provider": "bigcommerce", "storeHash": STORE, "projectUuid": PROJECT,
        "productionProjectUuid": "proj-e2e-prod", "tokenEnv": TOKEN_ENV,
        "baseUrl": base or fake.url, "artifactRoot": root}}}


def start_server(token=TOKEN, args=("--log-level", "debug")):
    srv = Server(config(), env={TOKEN_ENV: token}, args=args)
    SERVERS.append(srv)
    srv.initialize()
    return srv


def err_of(result):
    assert result.get("isError"), result
    return structured(result)["error"]


def dep_info(dep_id):
    return ctl("GET", "/deployments/" + dep_id)


def closes_of(dep_id, reason="timeout"):
    return [s for s in ctl("GET", "/streams")["closed"]
            if s["kind"] == "events" and s["key"] == dep_id and s["reason"] == reason]


def progress_of(srv, token):
    return [m["params"] for _, m in srv.notes_where("notifications/progress", token)]


def check_progress(notes):
    assert notes, "no progress notifications"
    values = [n["progress"] for n in notes]
    assert all(b > a for a, b in zip(values, values[1:])), values
    assert all(n.get("total") == 100 for n in notes), notes
    assert any("building · step " in n.get("message", "") for n in notes), notes


def cleanup():
    for srv in SERVERS:
        srv.close()
    fake.close()
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(outside, ignore_errors=True)


try:
    make_artifacts()
    ctl("POST", "/knobs", {"step_ms": STEP_MS, "close_after_ms": CLOSE_MS})
    main = start_server()
except BaseException:
    cleanup()  # a setup failure must not leave the fake running
    raise


@suite.test
def test_targets_and_publish_needs_the_gate():
    sc = structured(main.call("list_targets"))
    t = sc["targets"][0]
    assert t["provider"] == "bigcommerce" and t["ready"], t
    assert "create_preview" in t["capabilities"] and "tail_logs" in t["capabilities"], t
    assert "request_publish" in t["capabilities"], t
    # This server has no approver secret: the gate refuses rather than open
    # a request nobody could approve (tests/e2e/test_approval.py covers the rest).
    e = err_of(main.call("request_publish", {"sourceDeploymentId": "x"}))
    assert e["code"] in ("approver_secret_missing", "approval_unavailable"), e
    assert "approval page" in e["message"], e


@suite.test
def test_create_from_directory_with_wait():
    res = main.call("create_preview", {"artifact": "dist", "wait": True, "maxSeconds": 60,
                                       "message": "e2e dir"}, progress="dir", timeout=90)
    sc = structured(res)
    dep, stream = sc["deployment"], sc["stream"]
    assert not res.get("isError"), sc
    assert dep["environment"] == "preview" and dep["status"] == "ready", dep
    assert dep["providerStatus"] == "completed" and dep["url"].startswith("https://"), dep
    assert stream["terminal"] and stream["status"] == "ready", stream
    info = dep_info(dep["id"])
    # every snapshot arrived exactly once, across the server's early closes
    assert stream["eventCount"] == len(info["snapshots"]) == len(info["sentIndices"]), \
        (stream["eventCount"], info)
    assert len(closes_of(dep["id"])) >= 2, ctl("GET", "/streams")
    check_progress(progress_of(main, "dir"))
    assert progress_of(main, "dir")[-1]["progress"] == 100
    # the bundle: a real zip, everything under output/
    up = [u for u in ctl("GET", "/uploads") if u["upload_uuid"] == info["upload_uuid"]][0]
    assert up["isZip"] and up["allUnderOutput"] and up["contentType"] == "application/zip", up
    assert {"output/index.html", "output/assets/app.js", "output/assets/blank.txt",
            "output/assets/img/logo.bin", "output/empty/"} <= set(up["entries"]), up
    # the token goes to the API only, never to the signed upload URL
    reqs = fake.requests()
    ask = [r for r in reqs if r["path"] == API + "/infrastructure/deployments/uploads"]
    put = [r for r in reqs if r["path"] == "/_upload/" + up["upload_uuid"]]
    create = [r for r in reqs if r["path"] == API + "/infrastructure/deployments"
              and r["method"] == "POST"]
    assert ask and all(r["headers"].get("x-auth-token") == TOKEN for r in ask), ask
    assert len(put) == 1 and "x-auth-token" not in put[0]["headers"], put
    assert put[0]["method"] == "PUT"
    body = create[-1]["body"]
    assert body == {"upload_uuid": up["upload_uuid"], "project_uuid": PROJECT,
                    "environment_variables": []}, body
    STATE["dir_id"] = dep["id"]


@suite.test
def test_create_from_zip_and_resume_with_cursor():
    args = {"artifact": os.path.join(root, "bundle.zip")}
    sc = structured(main.call("create_preview", args))
    dep = sc["deployment"]
    assert dep["status"] == "queued" and dep["providerStatus"] == "queued", dep
    assert dep["environment"] == "preview" and dep["artifact"]["sha256"], dep
    info = dep_info(dep["id"])
    up = [u for u in ctl("GET", "/uploads") if u["upload_uuid"] == info["upload_uuid"]][0]
    with open(os.path.join(root, "bundle.zip"), "rb") as f:
        raw = f.read()
    assert up["sha256"] == hashlib.sha256(raw).hexdigest() == dep["artifact"]["sha256"], up
    # the same call again: the same deployment, no second upload
    again = structured(main.call("create_preview", args))
    assert again["deployment"]["id"] == dep["id"] and again.get("reused"), again
    assert len([u for u in ctl("GET", "/uploads") if u["received"]]) == 2

    # follow for 1 s, then resume from the cursor to the end
    first = structured(main.call("stream_events", {"deploymentId": dep["id"], "maxSeconds": 1},
                                 progress="z1"))
    assert not first["terminal"] and first["cursor"], first
    second = structured(main.call("stream_events", {"deploymentId": dep["id"],
                                                    "cursor": first["cursor"],
                                                    "maxSeconds": 60}, progress="z2", timeout=90))
    assert second["terminal"] and second["status"] == "ready", second
    info = dep_info(dep["id"])
    assert first["eventCount"] + second["eventCount"] == len(info["snapshots"]), \
        (first["eventCount"], second["eventCount"], info["snapshots"])
    assert len(closes_of(dep["id"])) >= 2
    check_progress(progress_of(main, "z1") + progress_of(main, "z2"))
    # a finished stream resumed from its final cursor relays nothing more,
    # and does not even connect again
    conns = dep_info(dep["id"])["connections"]
    third = structured(main.call("stream_events", {"deploymentId": dep["id"],
                                                   "cursor": second["cursor"],
                                                   "maxSeconds": 10}))
    assert third["terminal"] and third["eventCount"] == 0, third
    assert third["status"] == "ready" and third["durationMs"] < 5000, third
    assert dep_info(dep["id"])["connections"] == conns
    STATE["zip_id"] = dep["id"]


@suite.test
def test_artifact_confinement():
    e = err_of(main.call("create_preview", {"artifact": os.path.join(outside, "secret.zip")}))
    assert e["code"] == "artifact_outside_root", e
    e = err_of(main.call("create_preview", {"artifact": "escape/secret.zip"}))
    assert e["code"] == "artifact_outside_root", e
    e = err_of(main.call("create_preview", {"artifact": "../" + os.path.basename(outside)}))
    assert e["code"] == "artifact_outside_root", e
    e = err_of(main.call("create_preview", {"branch": "main"}))
    assert e["code"] == "artifact_required" and "artifact" in e["message"], e
    e = err_of(main.call("create_preview", {"artifact": "nope/missing"}))
    assert e["code"] == "artifact_not_found", e


@suite.test
def test_failure_codes_and_hostnames():
    ctl("POST", "/knobs", {"step_ms": 100})
    made = {}
    for name, knobs in (("c20", {"fail_code": 20}), ("c40", {"fail_code": 40}),
                        ("c60", {"fail_code": 60}), ("host", {"hostnames": True})):
        made[name] = ctl("POST", "/deployments", {"project_uuid": "proj-" + name,
                                                  "knobs": knobs})["deployment_uuid"]
    rids = {n: main.request_async("tools/call", {"name": "stream_events", "arguments": {
        "deploymentId": d, "maxSeconds": 30}}) for n, d in made.items()}
    out = {n: structured(main.wait_response(r, 45)["result"]) for n, r in rids.items()}
    ctl("POST", "/knobs", {"step_ms": STEP_MS})
    assert out["c20"]["status"] == "failed" and out["c20"]["terminal"], out["c20"]
    assert out["c20"]["failure"]["code"] == "bundle_retrieval_failed", out["c20"]
    assert "retrieve" in out["c20"]["failure"]["message"], out["c20"]
    assert out["c40"]["failure"]["code"] == "invalid_build_output", out["c40"]
    assert "output/" in out["c40"]["failure"]["message"], out["c40"]
    assert out["c60"]["status"] == "ready" and "url" not in out["c60"], out["c60"]
    assert out["host"]["status"] == "ready", out["host"]
    host = dep_info(made["host"])["snapshots"][-1]["deployment_hostnames"][0]
    assert out["host"]["url"] == "https://" + host, out["host"]
    # what was observed is remembered
    sc = structured(main.call("get_deployment", {"deploymentId": made["c20"]}))
    assert sc["deployment"]["status"] == "failed" and "note" in sc, sc
    assert sc["deployment"]["error"]["code"] == "bundle_retrieval_failed", sc


@suite.test
def test_tail_logs_across_closes():
    ctl("POST", "/knobs", {"log_interval_ms": 120, "logs_close_after_ms": 800,
                           "logs_keepalive_ms": 300})
    before = len([s for s in ctl("GET", "/streams")["closed"] if s["kind"] == "logs"])
    r_all = main.request_async("tools/call", {"name": "tail_logs", "arguments": {
        "seconds": 3, "maxLines": 1000}})
    r_warn = main.request_async("tools/call", {"name": "tail_logs", "arguments": {
        "seconds": 3, "level": "warn", "filter": "seq="}})
    every = structured(main.wait_response(r_all, 30)["result"])
    warn = structured(main.wait_response(r_warn, 30)["result"])
    logs_closed = [s for s in ctl("GET", "/streams")["closed"] if s["kind"] == "logs"]
    assert len([s for s in logs_closed[before:] if s["reason"] == "timeout"]) >= 4, logs_closed
    lines = every["lines"]
    assert every["count"] == len(lines) > 10 and every["dropped"] == 0, every
    assert {"debug", "info", "warn", "error"} <= {ln["level"] for ln in lines}, lines
    reqs = [ln for ln in lines if ln.get("source") == "request"]
    assert any(re.fullmatch(r"GET /products/\d+ 200", ln["text"]) for ln in reqs), reqs
    assert all(ln["level"] == "info" for ln in reqs), reqs
    exc = [ln for ln in lines if ln.get("source") == "exception"]
    assert exc and all(ln["level"] == "error" and ln["text"].startswith("TypeError: ")
                       for ln in exc), exc
    assert all(ln.get("ts") for ln in lines), lines
    # no duplicates across the reconnects: each event's lines appear once
    per_kind = {0: 1, 1: 2, 2: 2, 3: 2}
    seqs = {}
    for ln in lines:
        m = re.search(r"seq=(\d+)$", ln["text"])
        if m:
            seqs.setdefault(int(m.group(1)), []).append(ln["text"])
    assert seqs, lines
    for k, texts in seqs.items():
        assert len(texts) == per_kind[k % 4], (k, texts)
    order = [int(re.search(r"seq=(\d+)$", ln["text"]).group(1)) for ln in lines
             if re.search(r"seq=\d+$", ln["text"])]
    assert order == sorted(order), order
    assert warn["lines"] and all(ln["level"] in ("warn", "error") and "seq=" in ln["text"]
                                 for ln in warn["lines"]), warn
    msgs = main.notes_where("notifications/message")
    assert any(m["params"].get("logger") == "deploy-mcp/store" and
               isinstance(m["params"]["data"].get("lines", [None])[0], dict)
               for _, m in msgs), msgs[-3:]


@suite.test
def test_get_and_list_from_local_records():
    sc = structured(main.call("get_deployment", {"deploymentId": STATE["dir_id"]}))
    d = sc["deployment"]
    assert d["status"] == "ready" and d["url"].startswith("https://") and d["createdAt"], d
    assert d["environment"] == "preview" and "no API" in sc["note"], sc
    e = err_of(main.call("get_deployment", {"deploymentId": "00000000-dead-beef"}))
    assert "not created or observed by this deploy-mcp process" in e["message"], e
    sc = structured(main.call("list_deployments", {"environment": "preview"}))
    ids = [x["id"] for x in sc["deployments"]]
    assert ids[:2] == [STATE["zip_id"], STATE["dir_id"]] and "note" in sc, ids
    page1 = structured(main.call("list_deployments", {"limit": 1, "status": "ready",
                                                      "environment": "preview"}))
    assert len(page1["deployments"]) == 1 and page1["nextCursor"], page1
    page2 = structured(main.call("list_deployments", {"limit": 1, "status": "ready",
                                                      "environment": "preview",
                                                      "cursor": page1["nextCursor"]}))
    assert page2["deployments"][0]["id"] == STATE["dir_id"], page2
    sc = structured(main.call("list_deployments", {"status": "failed"}))
    assert all(x["status"] == "failed" for x in sc["deployments"]) and sc["deployments"], sc


@suite.test
def test_conflict_409():
    ctl("POST", "/knobs", {"default_knobs": {"hold": True}})
    try:
        first = structured(main.call("create_preview", {"artifact": "dist",
                                                        "idempotencyKey": "conflict-1"}))
        e = err_of(main.call("create_preview", {"artifact": "dist",
                                                "idempotencyKey": "conflict-2"}))
        assert e["code"] == "deployment_in_progress" and e["httpStatus"] == 409, e
        assert "already in progress" in e["message"] and PROJECT in e["message"], e
    finally:
        ctl("POST", "/knobs", {"default_knobs": {}})
    ctl("POST", "/deployments/%s/finish" % first["deployment"]["id"], {"status": "completed"})


@suite.test
def test_auth_errors_401_403():
    bad = start_server(token="wrong-token-NOT-VALID-42", args=())
    e = err_of(bad.call("create_preview", {"artifact": "bundle.zip"}))
    assert e["code"] == "unauthorized" and e["httpStatus"] == 401, e
    assert TOKEN_ENV in e["message"] and "wrong-token" not in e["message"], e
    e401 = e["message"]
    ctl("POST", "/knobs", {"feature_disabled": True})
    try:
        e = err_of(main.call("create_preview", {"artifact": "bundle.zip",
                                                "idempotencyKey": "forbidden-1"}))
        assert e["code"] == "infrastructure_hosting_not_enabled" and e["httpStatus"] == 403, e
        assert "Infrastructure Hosting is not enabled for this store" in e["message"], e
        assert e["message"] != e401 and TOKEN_ENV not in e["message"], e
        e = err_of(main.call("tail_logs", {"seconds": 5}))
        assert "Infrastructure Hosting is not enabled" in e["message"], e
    finally:
        ctl("POST", "/knobs", {"feature_disabled": False})
    bad.close()
    assert b"wrong-token-NOT-VALID-42" not in bad.stdout_bytes()


@suite.test
def test_rate_limit_429():
    path = API + "/infrastructure/deployments/uploads"
    ctl("POST", "/knobs", {"rate_limit": {"times": 10, "reset_ms": 150, "path": path}})
    try:
        ctl("DELETE", "/requests")
        e = err_of(main.call("create_preview", {"artifact": "bundle.zip",
                                                "idempotencyKey": "rl-1"}))
        assert e["code"] == "rate_limited" and e["retryable"] and e["httpStatus"] == 429, e
        assert "wait 0.1" in e["message"] or "wait 0.2" in e["message"], e
        tries = [r for r in fake.requests() if r["path"] == path]
        assert len(tries) == 4, len(tries)  # the HTTP layer retried what it could
    finally:
        ctl("POST", "/knobs", {"rate_limit": None})


@suite.test
def test_signed_url_rejected_without_leaking():
    ctl("POST", "/knobs", {"upload_bad_signature": True})
    try:
        e = err_of(main.call("create_preview", {"artifact": "bundle.zip",
                                                "idempotencyKey": "sig-1"}))
        assert e["code"] == "upload_failed" and e["httpStatus"] == 403, e
    finally:
        ctl("POST", "/knobs", {"upload_bad_signature": False})


@suite.test
def test_no_secret_in_output():
    srv_out = main.stdout_bytes().decode(errors="replace")
    srv_err = main.stderr()
    sigs = [u["signature"] for u in ctl("GET", "/uploads")] + \
           [u["urlSignature"] for u in ctl("GET", "/uploads")]
    assert sigs
    for text, where in ((srv_out, "stdout"), (srv_err, "stderr")):
        assert TOKEN not in text, where
        assert "X-Amz-Signature" not in text and "/_upload/" not in text, where
        for s in sigs:
            assert s not in text, (where, s)
    assert "bigcommerce: created deployment" in srv_err  # debug logging ran
    # and it shuts down cleanly (sanitizer builds: no leak or error report)
    main.close_stdin()
    assert main.wait_exit(10) == 0, main.stderr()[-3000:]
    assert "Sanitizer" not in main.stderr() and "runtime error" not in main.stderr()


try:
    suite.run()
finally:
    cleanup()
