"""The human approval gate end to end: the real binary over stdio against the
fake Mixpeek and Bluelink servers, and deploy-mcp's own approval page reached
over HTTP (urllib, as a browser would post its form).

For each platform without an approval concept of its own: request_publish →
the approval page → approve with the approver secret and the page's CSRF
token → the production publish happens on the fake (and only then), and
stream_events / get_deployment on the request id follow it; reject and expiry
are terminal with nothing published; a wrong secret is refused and leaves the
request pending; a replayed form is refused (one publish only); a request
survives a restart; without an approver secret nothing is requested; no tool
approves; the journal is the audit trail and never holds the secret; clients
that declare elicitation.url get elicitation/create (mode "url") before the
result and notifications/elicitation/complete after the decision.

Each platform is one class below (fake, target, how to make a ready preview,
what its production publish looks like on the fake); the tests loop over
PLATFORMS (Mixpeek, Bluelink, BigCommerce)."""

import html
import json
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from harness import TOKEN, Fake, Server, Suite, structured

suite = Suite("approval")

SECRET = "approver-e2e-SECRET-7f3a9c2e41d8"
NOTES = "Release 7 <b>new checkout</b> & faster search"
APPROVER = "Dana Approver"
TTL_ENV = "DEPLOY_MCP_APPROVAL_TTL_SECONDS"
SERVERS = []


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ok(result):
    assert not result.get("isError"), result
    return structured(result)


def error(result):
    assert result.get("isError"), result
    return structured(result)["error"]


def wait_for(what, fn, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ---- platforms -----------------------------------------------------------------


class Mixpeek:
    """Preview = a staging deploy of a bundle this deploy-mcp uploaded; publish =
    the same bundle_s3_key deployed with environment production."""
    name = "mixpeek"
    target = "canvas"
    unknown_sources = ("dpl_00000000deadbeef",)

    def __init__(self):
        self.fake = Fake("mixpeek")
        self.root = tempfile.mkdtemp(prefix="dmcp-apr-mx-")
        os.makedirs(os.path.join(self.root, "site"))
        with open(os.path.join(self.root, "site", "index.html"), "w") as f:
            f.write("<h1>release 7</h1>")

    def config(self):
        return {"provider": "mixpeek", "appId": "app_test", "baseUrl": self.fake.url,
                "artifactRoot": self.root}

    def env(self):
        return {"MIXPEEK_API_KEY": TOKEN}

    def reset(self):
        self.fake.call("POST", "/_fake/reset", {})

    def make_source(self, s):
        """A ready preview made through deploy-mcp: (id, facts to check the publish by)."""
        dep = ok(s.call("create_preview", {"artifact": "site", "message": "release 7",
                                           "idempotencyKey": str(uuid.uuid4()),
                                           "wait": True, "maxSeconds": 30}))["deployment"]
        assert dep["status"] == "ready", dep
        post = [r for r in self.fake.requests() if r["route"] == "deploy"][-1]
        return dep["id"], {"bundleKey": post["body"]["bundle_s3_key"]}

    def make_unready_source(self, s):
        self.fake.call("POST", "/_fake/knobs", {"next_deploy": [{"knobs": {"hang": True}}]})
        dep = ok(s.call("create_preview", {"artifact": "site", "message": "unfinished"}))
        return dep["deployment"]["id"]

    def publishes(self):
        return [r for r in self.fake.requests() if r["route"] == "deploy"
                and isinstance(r["body"], dict) and r["body"].get("environment") == "production"]

    def check_publish(self, info, production_id):
        [p] = self.publishes()
        assert p["body"] == {"message": "release 7", "environment": "production",
                             "source": "cli_upload", "bundle_s3_key": info["bundleKey"]}, p
        got = self.fake.call("GET", f"/_fake/deploys/{production_id}")
        assert got["environment"] == "production", got
        assert got["bundle_s3_key"] == info["bundleKey"], got

    def page_facts(self, info):
        return [info["bundleKey"], "app_test"]


class Bluelink:
    """Preview = a change set this deploy-mcp staged; publish = POST
    /v1/deployments/instances with that changeSetId (a new instance)."""
    name = "bluelink"
    target = "infra"
    api_key = "bl_apr_APIKEY_0123456789abcdef"
    unknown_sources = ("changeset:00000000-0000-4000-8000-000000000000", "prod-stack")

    def __init__(self):
        self.fake = Fake("bluelink", extra_args=("--api-key", self.api_key))

    def config(self):
        return {"provider": "bluelink", "baseUrl": self.fake.url, "instanceName": "prod-stack",
                "directory": "infra", "blueprintFile": "project.blueprint.yml",
                "auth": {"type": "apiKey", "keyEnv": "BL_KEY"}}

    def env(self):
        return {"BL_KEY": self.api_key}

    def reset(self):
        self.fake.call("POST", "/_fake/reset", {})
        self.fake.call("POST", "/_fake/knobs", {"default_knobs": {"event_delay_ms": 20}})

    def make_source(self, s):
        dep = ok(s.call("create_preview", {"idempotencyKey": str(uuid.uuid4()), "wait": True,
                                           "maxSeconds": 30}))["deployment"]
        assert dep["status"] == "ready" and dep["id"].startswith("changeset:"), dep
        return dep["id"], {"changeSetId": dep["id"][len("changeset:"):]}

    def make_unready_source(self, s):
        # Staged but never followed: this process has not seen CHANGES_STAGED.
        return ok(s.call("create_preview", {}))["deployment"]["id"]

    def publishes(self):
        return [r for r in self.fake.requests() if r["method"] in ("POST", "PATCH")
                and r["path"].startswith("/v1/deployments/instances")]

    def check_publish(self, info, production_id):
        [p] = self.publishes()
        assert p["method"] == "POST" and p["path"] == "/v1/deployments/instances", p
        assert p["body"]["changeSetId"] == info["changeSetId"], p
        assert p["body"]["instanceName"] == "prod-stack", p
        assert p["body"]["directory"] == "infra", p
        inst = self.fake.call("GET", "/_fake/instances/prod-stack")
        assert inst["instanceId"] == production_id, (inst, production_id)

    def page_facts(self, info):
        return [info["changeSetId"], "create resource ordersTable", "remove resource legacyQueue",
                "2 to create, 1 to update, 1 to remove"]


class BigCommerce:
    """Preview = a deployment of an upload on projectUuid made through deploy-mcp;
    publish = the same upload_uuid deployed on productionProjectUuid."""
    name = "bigcommerce"
    target = "store"
    unknown_sources = ("00000000-0000-4000-8000-000000000000",)
    production_project = "proj-production"

    def __init__(self):
        self.fake = Fake("bigcommerce")
        self.root = tempfile.mkdtemp(prefix="dmcp-apr-bc-")
        os.makedirs(os.path.join(self.root, "site"))
        with open(os.path.join(self.root, "site", "index.html"), "w") as f:
            f.write("<h1>release 7</h1>")

    def config(self):
        return {"provider": "bigcommerce", "storeHash": "abc123", "projectUuid": "proj-preview",
                "productionProjectUuid": self.production_project, "baseUrl": self.fake.url,
                "artifactRoot": self.root}

    def env(self):
        return {"BIGCOMMERCE_ACCESS_TOKEN": TOKEN}

    def reset(self):
        self.fake.call("POST", "/_fake/reset", {})
        self.fake.call("POST", "/_fake/knobs", {"step_ms": 40})

    def make_source(self, s):
        dep = ok(s.call("create_preview", {"artifact": "site", "message": "release 7",
                                           "idempotencyKey": str(uuid.uuid4()),
                                           "wait": True, "maxSeconds": 30}))["deployment"]
        assert dep["status"] == "ready", dep
        info = self.fake.call("GET", "/_fake/deployments/" + dep["id"])
        return dep["id"], {"upload_uuid": info["upload_uuid"]}

    def make_unready_source(self, s):
        # Created but never followed: its last seen status is queued.
        dep = ok(s.call("create_preview", {"artifact": "site", "message": "unfinished",
                                           "idempotencyKey": str(uuid.uuid4())}))
        return dep["deployment"]["id"]

    def publishes(self):
        return [r for r in self.fake.requests() if r["method"] == "POST"
                and r["path"].endswith("/infrastructure/deployments")
                and isinstance(r["body"], dict)
                and r["body"].get("project_uuid") == self.production_project]

    def check_publish(self, info, production_id):
        [p] = self.publishes()
        assert p["body"]["upload_uuid"] == info["upload_uuid"], p
        got = self.fake.call("GET", "/_fake/deployments/" + production_id)
        assert got["upload_uuid"] == info["upload_uuid"], got

    def page_facts(self, info):
        return [info["upload_uuid"], self.production_project]


PLATFORMS = [Mixpeek(), Bluelink(), BigCommerce()]


# ---- the server and the page -----------------------------------------------------


def start(p, port=None, secret=SECRET, capabilities=None, env=None, state_dir=None,
          approval=None):
    port = port or free_port()
    cfg = {"targets": {p.target: p.config()},
           "approval": dict({"listen": f"127.0.0.1:{port}"}, **(approval or {}))}
    e = dict(p.env())
    if secret:
        e["DEPLOY_MCP_APPROVER_SECRET"] = secret
    if state_dir:
        e["DEPLOY_MCP_STATE_DIR"] = state_dir
    e.update(env or {})
    s = Server(config=cfg, env=e, args=("--log-level", "debug"))
    s.port = port
    s.journal = os.path.join(state_dir or os.path.join(s.tmp, "state", "deploy-mcp"),
                             "approvals.jsonl")
    SERVERS.append(s)
    s.initialize(capabilities=capabilities)
    return s


def stop(s):
    """Closes stdin and checks a clean exit with no secret on either stream."""
    s.close_stdin()
    rc = s.wait_exit(10)
    out, err = s.stdout_bytes().decode(errors="replace"), s.stderr()
    assert rc == 0, f"exit status {rc}; stderr: {err[-2000:]}"
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert marker not in err, err[-4000:]
    assert SECRET not in out and SECRET not in err, "the approver secret leaked"


def http(method, url, form=None, headers=None):
    """(status, body text) of one request to the approval page."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    h = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
    if form is not None:
        parts = urllib.parse.urlsplit(url)
        h["Origin"] = f"{parts.scheme}://{parts.netloc}"   # what a browser sends
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def page(url):
    code, body = http("GET", url)
    assert code == 200, (code, body)
    m = re.search(r'<span class="status [a-z_]+" id="status">([a-z_]+)</span>', body)
    csrf = re.search(r'name="csrf" value="([0-9a-f]{32})"', body)
    return {"html": body, "text": html.unescape(body), "status": m and m.group(1),
            "csrf": csrf and csrf.group(1)}


def decide(url, csrf, decision="approve", secret=SECRET, name=APPROVER, note="ship it"):
    return http("POST", url, {"csrf": csrf, "name": name, "secret": secret,
                              "note": note, "decision": decision})


def request(s, p, source):
    r = s.call("request_publish", {"sourceDeploymentId": source, "notes": NOTES})
    req = ok(r)["request"]
    assert req["status"] == "pending_approval", req
    assert req["id"].startswith("apr_") and len(req["id"]) == 36, req
    assert req["webApprovalUrl"] == f"http://127.0.0.1:{s.port}/approvals/{req['id']}", req
    assert req["sourceDeploymentId"] == source, req
    assert req["target"] == p.target and req["provider"] == p.name, req
    assert SECRET not in json.dumps(r)
    return req


def journal(s):
    with open(s.journal) as f:
        return [json.loads(line) for line in f if line.strip()]


def messages(s):
    """Every message on stdout, in order."""
    return [json.loads(line) for line in s.stdout_bytes().splitlines() if line.strip()]


def follow(s, req_id, max_seconds=60):
    return s.request_async("tools/call", {"name": "stream_events", "arguments": {
        "deploymentId": req_id, "maxSeconds": max_seconds}}, progress=f"follow-{req_id}")


def get(s, dep_id):
    return ok(s.call("get_deployment", {"deploymentId": dep_id}))["deployment"]


# ---- tests -------------------------------------------------------------------------


@suite.test
def approve_publishes_and_the_request_id_follows_it():
    for p in PLATFORMS:
        p.reset()
        s = start(p, capabilities={"elicitation": {"url": {}}})
        source, info = p.make_source(s)
        t0 = int(time.time() * 1000)
        req = request(s, p, source)
        url = req["webApprovalUrl"]

        # elicitation/create (URL mode) came before the request_publish result
        msgs = messages(s)
        eli = [i for i, m in enumerate(msgs) if m.get("method") == "elicitation/create"]
        res = [i for i, m in enumerate(msgs) if "result" in m
               and "request" in (m["result"].get("structuredContent") or {})]
        assert len(eli) == 1 and len(res) == 1 and eli[0] < res[0], (p.name, msgs)
        ec = msgs[eli[0]]
        assert ec["params"]["mode"] == "url" and ec["params"]["url"] == url, ec
        assert ec["params"]["elicitationId"] == req["id"] and ec["params"]["message"], ec
        s.send({"jsonrpc": "2.0", "id": ec["id"], "result": {"action": "accept"}})

        # before the decision: pending, nothing published
        d = get(s, req["id"])
        assert d["id"] == req["id"] and d["environment"] == "production", d
        assert d["status"] == "queued" and d["providerStatus"] == "pending_approval", d
        assert d["request"]["status"] == "pending_approval", d
        fid = follow(s, req["id"])
        pg = page(url)
        assert pg["status"] == "pending_approval" and pg["csrf"], pg["html"][:500]
        for fact in [source, p.target, p.name, NOTES, req["id"], *p.page_facts(info)]:
            assert fact in pg["text"], (p.name, fact)
        assert "<b>new checkout</b>" not in pg["html"], "agent notes must be escaped"
        assert SECRET not in pg["html"]
        time.sleep(0.3)
        assert p.publishes() == [], p.publishes()
        assert not s.notes_where("notifications/elicitation/complete")

        code, body = decide(url, pg["csrf"])
        assert code == 200 and "Approved" in body, (code, body)

        # stream_events on the request id follows the production deployment to the end
        r = s.wait_response(fid, 60)
        sc = ok(r["result"])
        assert sc["terminal"] is True and sc["status"] == "ready", sc
        assert sc["requestId"] == req["id"] and sc["request"]["status"] == "published", sc
        prod = sc["request"]["productionDeploymentId"]
        assert sc["deploymentId"] == prod and sc["eventCount"] > 0, sc
        assert s.notes_where("notifications/progress", f"follow-{req['id']}"), "no progress"
        p.check_publish(info, prod)

        d = get(s, req["id"])
        assert d["id"] == prod and d["environment"] == "production", d
        assert d["status"] == "ready" and d["request"]["status"] == "published", d
        assert d["request"]["decidedBy"] == APPROVER, d

        done = s.wait_notes("notifications/elicitation/complete", 1)
        assert done[0][1]["params"]["elicitationId"] == req["id"], done

        # the journal is the audit trail: who, when, from where; never the secret
        recs = [x for x in journal(s) if x["id"] == req["id"]]
        kinds = [x["t"] for x in recs]
        assert kinds[0] == "create" and "decision" in kinds, recs
        create = recs[0]
        assert create["sourceId"] == source and create["notes"] == NOTES, create
        assert create["target"] == p.target and create["provider"] == p.name, create
        [dec] = [x for x in recs if x["t"] == "decision"]
        assert dec["approve"] is True and dec["by"] == APPROVER, dec
        assert dec["from"] == "127.0.0.1" and dec["note"] == "ship it", dec
        assert t0 <= dec["at"] <= int(time.time() * 1000), dec
        states = [x["status"] for x in recs if x["t"] == "status"]
        assert states == ["publishing", "published"], recs
        assert recs[-1]["productionId"] == prod, recs
        with open(s.journal) as f:
            text = f.read()
        assert SECRET not in text and pg["csrf"] not in text, "secret or CSRF token journaled"
        assert oct(os.stat(s.journal).st_mode & 0o777) == "0o600", os.stat(s.journal)
        stop(s)


@suite.test
def reject_is_terminal_and_publishes_nothing():
    for p in PLATFORMS:
        p.reset()
        s = start(p)   # no elicitation capability: no elicitation messages at all
        source, _ = p.make_source(s)
        req = request(s, p, source)
        pg = page(req["webApprovalUrl"])
        # a name that is not valid UTF-8 and tries to forge a log line
        code, body = decide(req["webApprovalUrl"], pg["csrf"], decision="reject",
                            name=APPROVER.encode() + b"\xff\nforged", note="not on a Friday")
        assert code == 200 and "Rejected" in body, (code, body)
        d = wait_for("rejected", lambda: (lambda d: d if d["providerStatus"] == "rejected"
                                          else None)(get(s, req["id"])))
        assert d["status"] == "canceled" and d["error"]["code"] == "rejected", d
        sc = ok(s.call("stream_events", {"deploymentId": req["id"], "maxSeconds": 10}))
        assert sc["terminal"] is True and sc["status"] == "canceled", sc
        assert sc["failure"]["code"] == "rejected", sc
        after = page(req["webApprovalUrl"])
        assert after["status"] == "rejected" and after["csrf"] is None, after["text"][-800:]
        assert "not on a Friday" in after["text"]
        code, _ = decide(req["webApprovalUrl"], pg["csrf"])
        assert code == 409, code
        time.sleep(0.3)
        assert p.publishes() == [], p.publishes()
        dec = [x for x in journal(s) if x["t"] == "decision"]
        assert len(dec) == 1 and dec[0]["approve"] is False, dec
        assert dec[0]["by"] == APPROVER + "\ufffd forged", dec
        assert not re.search(r"^forged", s.stderr(), re.M), "a forged log line"
        for m in messages(s):
            assert "elicitation" not in m.get("method", ""), m
        stop(s)


@suite.test
def wrong_secret_is_refused_and_a_replayed_form_publishes_once():
    for p in PLATFORMS:
        p.reset()
        s = start(p)
        source, info = p.make_source(s)
        req = request(s, p, source)
        url = req["webApprovalUrl"]
        pg = page(url)

        code, body = decide(url, pg["csrf"], secret="not-the-secret")
        assert code == 403 and "Wrong approver secret" in body, (code, body)
        code, _ = decide(url, "0" * 32)                       # a forged CSRF token
        assert code == 403, code
        code, _ = http("POST", url, {"csrf": pg["csrf"], "secret": SECRET,
                                     "decision": "approve", "name": "x"},
                       headers={"Origin": "http://evil.example"})
        assert code == 403, code                              # cross-origin
        code, _ = http("GET", url, headers={"Host": "evil.example"})
        assert code == 403, code                              # DNS rebinding
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
            c.sendall(f"HEAD /approvals/{req['id']} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                      .encode())
            raw = b""
            while chunk := c.recv(65536):
                raw += chunk
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and rest == b"", raw[:300]   # no body
        assert page(url)["status"] == "pending_approval"
        assert get(s, req["id"])["providerStatus"] == "pending_approval"
        assert not [x for x in journal(s) if x["t"] != "create"], journal(s)
        time.sleep(0.2)
        assert p.publishes() == []

        code, _ = decide(url, pg["csrf"])
        assert code == 200, code
        code, body = decide(url, pg["csrf"])                  # the same form again
        assert code == 409 and "already decided" in body, (code, body)
        d = wait_for("published", lambda: (lambda d: d if d.get("request", {}).get(
            "status") == "published" else None)(get(s, req["id"])))
        time.sleep(0.5)
        p.check_publish(info, d["id"])                        # exactly one publish
        assert len([x for x in journal(s) if x["t"] == "decision"]) == 1
        stop(s)


@suite.test
def an_undecided_request_expires():
    for p in PLATFORMS:
        p.reset()
        s = start(p, env={TTL_ENV: "2"}, capabilities={"elicitation": {"url": {}}})
        source, _ = p.make_source(s)
        req = request(s, p, source)
        pg = page(req["webApprovalUrl"])
        fid = follow(s, req["id"], max_seconds=30)
        r = s.wait_response(fid, 20)       # ends by itself when the request expires
        sc = ok(r["result"])
        assert sc["terminal"] is True and sc["status"] == "canceled", sc
        assert sc["failure"]["code"] == "expired", sc
        d = get(s, req["id"])
        assert d["providerStatus"] == "expired" and d["status"] == "canceled", d
        assert d["error"]["code"] == "expired", d
        code, body = decide(req["webApprovalUrl"], pg["csrf"])
        assert code == 409 and "expired" in body, (code, body)
        assert page(req["webApprovalUrl"])["status"] == "expired"
        assert p.publishes() == []
        assert [x["status"] for x in journal(s) if x["t"] == "status"] == ["expired"]
        done = s.wait_notes("notifications/elicitation/complete", 1)
        assert done[0][1]["params"]["elicitationId"] == req["id"], done
        stop(s)


@suite.test
def a_request_survives_a_restart():
    for p in PLATFORMS:
        p.reset()
        state = tempfile.mkdtemp(prefix="dmcp-apr-state-")
        port = free_port()
        try:
            s1 = start(p, port=port, state_dir=state)
            source, info = p.make_source(s1)
            req = request(s1, p, source)
            old_csrf = page(req["webApprovalUrl"])["csrf"]
            stop(s1)

            s2 = start(p, port=port, state_dir=state)
            d = get(s2, req["id"])
            assert d["providerStatus"] == "pending_approval", d
            pg = page(req["webApprovalUrl"])
            assert pg["status"] == "pending_approval" and source in pg["text"], pg["text"][:400]
            assert pg["csrf"] != old_csrf       # CSRF tokens do not outlive the process
            code, _ = decide(req["webApprovalUrl"], old_csrf)
            assert code == 403, code
            assert p.publishes() == []
            fid = follow(s2, req["id"])
            code, body = decide(req["webApprovalUrl"], pg["csrf"])
            assert code == 200, (code, body)
            sc = ok(s2.wait_response(fid, 60)["result"])
            assert sc["terminal"] is True and sc["status"] == "ready", sc
            p.check_publish(info, sc["request"]["productionDeploymentId"])
            stop(s2)
        finally:
            shutil.rmtree(state, ignore_errors=True)


@suite.test
def without_an_approver_secret_nothing_is_requested():
    for p in PLATFORMS:
        p.reset()
        s = start(p, secret=None)
        e = error(s.call("request_publish", {"sourceDeploymentId": p.unknown_sources[0]}))
        assert e["code"] == "approver_secret_missing" and e["provider"] == p.name, e
        assert "DEPLOY_MCP_APPROVER_SECRET" in e["message"], e
        assert "approval.secretEnv" in e["message"], e
        stop(s)
        s = start(p, secret=None, env={"TEAM_APPROVER_SECRET": SECRET},
                  approval={"secretEnv": "TEAM_APPROVER_SECRET"})
        source, _ = p.make_source(s)
        req = request(s, p, source)      # the named variable is the secret now
        code, _ = decide(req["webApprovalUrl"], page(req["webApprovalUrl"])["csrf"],
                         decision="reject")
        assert code == 200, code
        stop(s)
        s = start(p, secret=None, approval={"secretEnv": "TEAM_APPROVER_SECRET"})
        e = error(s.call("request_publish", {"sourceDeploymentId": p.unknown_sources[0]}))
        assert e["code"] == "approver_secret_missing" and "TEAM_APPROVER_SECRET" in e["message"]
        assert not os.path.exists(s.journal) or journal(s) == []
        stop(s)


@suite.test
def unknown_and_unready_sources_are_refused():
    for p in PLATFORMS:
        p.reset()
        s = start(p)
        for src in p.unknown_sources:
            e = error(s.call("request_publish", {"sourceDeploymentId": src}))
            assert e["code"] == "unknown_source" and e["provider"] == p.name, e
            assert "create_preview" in e["message"], e
        e = error(s.call("request_publish", {"sourceDeploymentId": p.make_unready_source(s)}))
        assert e["code"] == "source_not_ready" and "stream_events" in e["message"], e
        assert not os.path.exists(s.journal) or journal(s) == []
        assert p.publishes() == []
        stop(s)


@suite.test
def bluelink_update_patches_the_instance_and_follows_only_its_deployment():
    p = next(x for x in PLATFORMS if x.name == "bluelink")
    p.reset()
    s = start(p)
    approved = []
    for _ in range(2):
        source, info = p.make_source(s)
        req = request(s, p, source)
        fid = follow(s, req["id"])
        code, _ = decide(req["webApprovalUrl"], page(req["webApprovalUrl"])["csrf"])
        assert code == 200, code
        approved.append((req, info, ok(s.wait_response(fid, 60)["result"])))
    (req1, _, sc1), (req2, info2, sc2) = approved
    assert "new: deploying creates it" in req1["plan"], req1
    assert "new" not in req2["plan"], req2
    inst = sc1["request"]["productionDeploymentId"]
    assert sc2["request"]["productionDeploymentId"] == inst, (sc1, sc2)
    pubs = p.publishes()
    assert [(r["method"], r["path"]) for r in pubs] == [
        ("POST", "/v1/deployments/instances"), ("PATCH", f"/v1/deployments/instances/{inst}")]
    assert pubs[1]["body"]["changeSetId"] == info2["changeSetId"], pubs[1]
    assert "instanceName" not in pubs[1]["body"], pubs[1]
    # The second follow started after the first deployment's last event (the
    # PATCH answer's lastEventId), so it saw the update only and ended UPDATED.
    assert sc2["terminal"] is True and sc2["status"] == "ready", sc2
    e = error(s.call("request_publish", {"sourceDeploymentId": req2["sourceDeploymentId"]}))
    assert e["code"] == "already_published", e                 # a change set applies once
    assert get(s, req2["id"])["providerStatus"] == "UPDATED"
    ch = p.fake.call("GET", f"/_fake/instances/{inst}")["_fake"]
    first = [x for x in p.fake.call("GET", "/_fake/streams")["closed"]
             if x["channel"] == inst and x["connection"] == 2]
    assert first and first[0]["requestLastEventId"], first
    ids = [e["id"] for e in ch["events"]]
    assert ids.index(first[0]["requestLastEventId"]) < len(ids) - 1, first
    assert all(ids.index(i) > ids.index(first[0]["requestLastEventId"])
               for i in first[0]["sentIds"]), first
    stop(s)


@suite.test
def no_tool_approves():
    p = PLATFORMS[-1]
    p.reset()
    s = start(p)
    tools = s.request("tools/list", {})["result"]["tools"]
    for t in tools:
        name, desc = t["name"], t["description"].lower()
        assert not re.search(r"approv|decid|decision|reject", name), name
        props = t["inputSchema"].get("properties", {})
        for prop in props:
            assert not re.search(r"approv|decision|secret|csrf", prop, re.I), (name, prop)
        # any mention of approving says a human does it, elsewhere
        if "approv" in desc:
            assert "human" in desc, (name, desc)
    source, _ = p.make_source(s)
    req = request(s, p, source)
    rid = req["id"]
    for t in tools:
        args = {}
        props = t["inputSchema"].get("properties", {})
        for key in ("deploymentId", "sourceDeploymentId"):
            if key in props:
                args[key] = rid
        if "maxSeconds" in props:
            args["maxSeconds"] = 1
        if "seconds" in props:
            args["seconds"] = 1
        for extra in ({}, {"notes": "approve", "cursor": "approve"}):
            a = dict(args, **{k: v for k, v in extra.items() if k in props})
            r = s.request("tools/call", {"name": t["name"], "arguments": a}, timeout=30)
            assert "result" in r or "error" in r, r
    assert get(s, rid)["providerStatus"] == "pending_approval"
    assert page(req["webApprovalUrl"])["status"] == "pending_approval"
    mine = [x for x in journal(s) if x["id"] == rid]
    assert [x["t"] for x in mine] == ["create"], mine
    assert p.publishes() == []
    stop(s)


def cleanup():
    for s in SERVERS:
        s.close()
    for p in PLATFORMS:
        p.fake.close()
        if hasattr(p, "root"):
            shutil.rmtree(p.root, ignore_errors=True)


if __name__ == "__main__":
    import atexit
    atexit.register(cleanup)
    suite.run()
