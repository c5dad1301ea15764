"""Secrets and paths, end to end.

1. Secrets never leave: every tool is driven on every platform (Showly,
   BigCommerce, Mixpeek, Bluelink with bearer, API key and HMAC signature)
   with --log-level debug and logging/setLevel debug, on success and error
   paths (wrong credentials, 4xx/5xx and rate limits from the fakes, a signed
   upload URL rejected with its signature echoed), over stdio and over the
   listener (Streamable HTTP and WebSocket with DEPLOY_MCP_AUTH_TOKEN). Then
   everything the server wrote — stdout, stderr, every listener response,
   and every file under XDG_STATE_HOME / XDG_CONFIG_HOME (the approval journal,
   when there is one) — is searched for every configured secret, every wrong
   secret that was tried, and every upload signature the fakes issued.
2. Artifact paths stay inside the target's artifactRoot (default: the working
   directory) on BigCommerce and Mixpeek: absolute paths outside, `..`
   traversal, a symlink inside the root pointing outside, a symlink inside a
   directory artifact pointing outside — all refused, nothing uploaded.
3. baseUrl only ever comes from the config: no tool's inputSchema has a
   property that could carry a URL or host, extra properties are refused,
   and URL-looking values in the arguments that exist never redirect a
   request (a loopback probe socket sees no connection).
Python standard library only; loopback only."""

import base64
import io
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from harness import Fake, Server, Suite, structured
from test_listener import ACCEPT, INIT, WS, Listener

suite = Suite("secrets")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "LeakSanitizer", "runtime error:")

# Every secret gets a distinct, greppable value.
S_TOKEN = "sk_live_SHOWLY_secret_7f3a9c0e11d24b6b"
B_TOKEN = "bc_BIGCOMMERCE_secret_91d0c7aa2e5f4c1d"
M_KEY = "mxp_sk_MIXPEEK_secret_4b8e2f6a0c9d1e3f"
BL_TOKEN = "bl_BEARER_secret_eyJhbGciOiJIUzI1NiJ9x"
BL_KEY = "bl_APIKEY_secret_0c1d2e3f4a5b6c7d"
BL_KEY_ID = "deploy-mcp-secrets"
BL_SECRET = "bl_HMAC_secret_5e6f7a8b9c0d1e2f3a4b"
AUTH_TOKEN = "dmcp_LISTENER_secret_a1b2c3d4e5f60718"
APPROVER = "dmcp_APPROVER_secret_0f1e2d3c4b5a6978"
WRONG_APPROVER = "dmcp_WRONG_approver_bbbb1111cccc"
WRONG = {"SHOWLY_TOKEN": "sk_live_WRONG_showly_0000aaaa1111",
         "BC_TOKEN": "bc_WRONG_bigcommerce_2222bbbb3333",
         "MIXPEEK_API_KEY": "mxp_sk_WRONG_mixpeek_4444cccc5555",
         "BL_TOKEN": "bl_WRONG_bearer_6666dddd7777",
         "BL_KEY": "bl_WRONG_apikey_8888eeee9999",
         "BL_SECRET": "bl_WRONG_hmac_aaaaffff0000"}
ENV = {"SHOWLY_TOKEN": S_TOKEN, "BC_TOKEN": B_TOKEN, "MIXPEEK_API_KEY": M_KEY,
       "BL_TOKEN": BL_TOKEN, "BL_KEY": BL_KEY, "BL_SECRET": BL_SECRET,
       "DMCP_APPROVER": APPROVER}
STORE = "store7"
PROJECT = "proj-secrets-1"

fakes = {}
outputs = []          # (where, text) of everything the server wrote
servers = []
root = tempfile.mkdtemp(prefix="dmcp-secrets-root-")
outside = tempfile.mkdtemp(prefix="dmcp-secrets-outside-")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


APPROVAL_LISTEN = f"127.0.0.1:{free_port()}"


def config(artifact_root=root):
    bl = {"provider": "bluelink", "baseUrl": fakes["bluelink"].url, "instanceName": "sec-stack",
          "directory": "infra", "blueprintFile": "project.blueprint.yml"}
    targets = {
        "web": {"provider": "showly", "siteId": "site_sec", "tokenEnv": "SHOWLY_TOKEN",
                "baseUrl": fakes["showly"].url},
        "store": {"provider": "bigcommerce", "storeHash": STORE, "projectUuid": PROJECT,
                  "productionProjectUuid": PROJECT + "-prod",
                  "tokenEnv": "BC_TOKEN", "baseUrl": fakes["bigcommerce"].url},
        "canvas": {"provider": "mixpeek", "appId": "app_test", "namespace": "ns_sec",
                   "baseUrl": fakes["mixpeek"].url},
        "bl_bearer": dict(bl, auth={"type": "bearer", "tokenEnv": "BL_TOKEN"}),
        "bl_apikey": dict(bl, auth={"type": "apiKey", "keyEnv": "BL_KEY"}),
        "bl_sig": dict(bl, auth={"type": "signature", "keyId": BL_KEY_ID,
                                 "secretEnv": "BL_SECRET"}),
    }
    for name in ("store", "canvas"):
        if artifact_root is not None:
            targets[name]["artifactRoot"] = artifact_root
    return {"targets": targets, "defaultTarget": "web",
            "approval": {"listen": APPROVAL_LISTEN, "secretEnv": "DMCP_APPROVER"}}


def start(env=ENV, cwd=None, artifact_root=root):
    s = Server(config=config(artifact_root), env=env, args=["--log-level", "debug"], cwd=cwd)
    servers.append(s)
    s.initialize()
    assert "result" in s.request("logging/setLevel", {"level": "debug"})
    return s


def ctl(name, method, path, body=None):
    return fakes[name].call(method, "/_fake" + path, body if body is not None else {})


def result(s, name, args, timeout=90):
    r = s.call(name, args, timeout=timeout)
    assert isinstance(r.get("content"), list) and r["content"], r
    return r


def ok(s, name, args, timeout=90):
    r = result(s, name, args, timeout)
    assert not r.get("isError"), (name, args, r)
    return structured(r)


def err(s, name, args, timeout=90):
    r = result(s, name, args, timeout)
    assert r.get("isError"), (name, args, r)
    return structured(r)["error"]


def make_artifacts():
    site = os.path.join(root, "site")
    os.makedirs(os.path.join(site, "assets"))
    for rel, text in (("index.html", "<h1>secrets</h1>"), ("canvas.json", '{"pages":1}'),
                      ("assets/app.js", "console.log(1)")):
        with open(os.path.join(site, rel), "w") as f:
            f.write(text)
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("output/index.html", "<html>zip</html>")
    for where in (root, outside):
        with open(os.path.join(where, "bundle.zip"), "wb") as f:
            f.write(b.getvalue())
    with open(os.path.join(outside, "id_rsa"), "w") as f:
        f.write("-----BEGIN OPENSSH PRIVATE KEY----- not really\n")
    # escapes: a symlinked directory, a symlinked file, and a directory
    # artifact that hides a link to a file outside
    os.symlink(outside, os.path.join(root, "escape"))
    os.symlink(os.path.join(outside, "bundle.zip"), os.path.join(root, "link.zip"))
    sneaky = os.path.join(root, "sneaky")
    os.makedirs(sneaky)
    with open(os.path.join(sneaky, "index.html"), "w") as f:
        f.write("<h1>innocent</h1>")
    os.symlink(os.path.join(outside, "id_rsa"), os.path.join(sneaky, "key.txt"))


def signatures():
    """Every upload / request signature the fakes issued or received, by kind."""
    out = {"bigcommerce": set(), "mixpeek": set(), "bluelink": set()}
    for u in ctl("bigcommerce", "GET", "/uploads"):
        out["bigcommerce"] |= {u.get("signature"), u.get("urlSignature")}
    for r in fakes["bigcommerce"].requests():
        m = re.search(r"X-Amz-Signature=([^&]+)", r.get("rawQuery") or "")
        if m:
            out["bigcommerce"].add(m.group(1))
    for r in fakes["mixpeek"].requests():
        sig = (r.get("query") or {}).get("X-Amz-Signature")
        if sig:
            out["mixpeek"].add(sig if isinstance(sig, str) else sig[0])
    for r in fakes["bluelink"].requests():
        m = re.search(r'signature="([^"]+)"', r["headers"].get("bluelink-signature-v1", ""))
        if m:
            out["bluelink"].add(m.group(1))
    return {k: {x for x in v if x and len(x) >= 8} for k, v in out.items()}


def secrets_seen():
    """Configured secrets, wrong ones tried, and every signature the fakes
    issued or received."""
    out = {S_TOKEN, B_TOKEN, M_KEY, BL_TOKEN, BL_KEY, BL_SECRET, AUTH_TOKEN, APPROVER,
           WRONG_APPROVER}
    out |= set(WRONG.values())
    for sigs in signatures().values():
        out |= sigs
    return out


# ---- 1. every tool on every platform, success and error paths -----------------

def page_request(method, url, form=None):
    """(status, body) from deploy-mcp's approval page, as a browser would ask."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    h = {}
    if form is not None:
        parts = urllib.parse.urlsplit(url)
        h = {"Content-Type": "application/x-www-form-urlencoded",
             "Origin": f"{parts.scheme}://{parts.netloc}"}
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def publish_through_gate(s, target, source, decision):
    """request_publish on a platform without its own approval: deploy-mcp's
    gate (pending request, approval page, approver secret). decision:
    "approve" (right secret), "wrong" (wrong secret, stays pending) or
    "reject". The page and its answers join what is searched for secrets."""
    r = result(s, "request_publish", {"target": target, "sourceDeploymentId": source,
                                      "notes": "secrets check"})
    if r.get("isError"):   # a build without the approval gate
        assert structured(r)["error"]["code"] in ("unsupported", "not_ready",
                                                  "source_not_ready"), r
        return None
    req = structured(r)["request"]
    url = req["webApprovalUrl"]
    assert req["status"] == "pending_approval" and url.startswith("http://127.0.0.1:"), req
    st, page = page_request("GET", url)
    assert st == 200, (st, page[:300])
    outputs.append((f"approval page {url}", page))
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert m, page[:500]
    secret = WRONG_APPROVER if decision == "wrong" else APPROVER
    st, answer = page_request("POST", url, {"csrf": m.group(1), "name": "Sec Tester",
                                            "secret": secret, "note": "checked",
                                            "decision": "reject" if decision == "reject"
                                            else "approve"})
    outputs.append((f"approval answer {url}", answer))
    if decision == "wrong":
        assert st in (401, 403), (st, answer[:300])
    else:
        assert st in (200, 303), (st, answer[:300])
    return req["id"]


def drive_showly(s):
    ok(s, "list_targets", {})
    fakes["showly"].call("POST", "/_fake/knobs", {"default_knobs": {"slow_ms": 20}})
    created = ok(s, "create_preview", {"target": "web", "branch": "main", "wait": True,
                                       "maxSeconds": 30}, )
    dep = created["deployment"]["id"]
    ok(s, "stream_events", {"target": "web", "deploymentId": dep, "maxSeconds": 20})
    ok(s, "tail_logs", {"target": "web", "deploymentId": dep, "maxLines": 3})
    ok(s, "get_deployment", {"target": "web", "deploymentId": dep})
    ok(s, "list_deployments", {"target": "web", "limit": 5})
    req = ok(s, "request_publish", {"target": "web", "sourceDeploymentId": dep, "notes": "sec"})
    assert req["request"]["webApprovalUrl"].startswith("https://"), req
    # error paths: 404, injected 500s, quota 429
    assert err(s, "get_deployment", {"target": "web", "deploymentId": "dep_nope"})["httpStatus"] == 404
    fakes["showly"].call("POST", "/_fake/knobs", {"errors": [
        {"path": "/deployments*", "status": 500, "times": 20, "message": "boom"}]})
    e = err(s, "list_deployments", {"target": "web"})
    assert e["httpStatus"] == 500, e
    fakes["showly"].call("POST", "/_fake/knobs", {"errors": [], "quota_exceeded": True})
    assert err(s, "create_preview", {"target": "web", "branch": "q"})["httpStatus"] == 429
    fakes["showly"].call("POST", "/_fake/knobs", {"quota_exceeded": False})
    return dep


def drive_bigcommerce(s):
    ctl("bigcommerce", "POST", "/knobs", {"step_ms": 100, "close_after_ms": 800,
                                          "log_interval_ms": 100})
    created = ok(s, "create_preview", {"target": "store", "artifact": "site", "wait": True,
                                       "maxSeconds": 30})
    dep = created["deployment"]["id"]
    ok(s, "stream_events", {"target": "store", "deploymentId": dep, "maxSeconds": 10})
    ok(s, "tail_logs", {"target": "store", "seconds": 1})
    ok(s, "get_deployment", {"target": "store", "deploymentId": dep})
    ok(s, "list_deployments", {"target": "store"})
    publish_through_gate(s, "store", dep, "wrong")
    # the signed URL is refused and S3 echoes the signature back
    ctl("bigcommerce", "POST", "/knobs", {"upload_bad_signature": True})
    e = err(s, "create_preview", {"target": "store", "artifact": "bundle.zip",
                                  "idempotencyKey": "sec-bad-sig"})
    assert e["httpStatus"] == 403, e
    ctl("bigcommerce", "POST", "/knobs", {"upload_bad_signature": False,
                                          "feature_disabled": True})
    assert err(s, "tail_logs", {"target": "store", "seconds": 1})["httpStatus"] == 403
    ctl("bigcommerce", "POST", "/knobs", {"feature_disabled": False, "errors": [
        {"path": f"/stores/{STORE}/v3/infrastructure/deployments/uploads", "status": 500,
         "times": 10}]})
    assert err(s, "create_preview", {"target": "store", "artifact": "bundle.zip",
                                     "idempotencyKey": "sec-500"})["httpStatus"] == 500
    ctl("bigcommerce", "POST", "/knobs", {"errors": []})
    return dep


def drive_mixpeek(s):
    created = ok(s, "create_preview", {"target": "canvas", "artifact": "site", "wait": True,
                                       "maxSeconds": 30})
    dep = created["deployment"]["id"]
    ok(s, "stream_events", {"target": "canvas", "deploymentId": dep, "maxSeconds": 10})
    ok(s, "tail_logs", {"target": "canvas", "deploymentId": dep})
    ok(s, "get_deployment", {"target": "canvas", "deploymentId": dep})
    ok(s, "list_deployments", {"target": "canvas"})
    req = publish_through_gate(s, "canvas", dep, "approve")
    if req:   # the production publish runs after the approval: follow it
        ok(s, "stream_events", {"target": "canvas", "deploymentId": req, "maxSeconds": 20})
    ctl("mixpeek", "POST", "/knobs", {"rate_limits": {"get-deploy": 0}})
    assert err(s, "get_deployment", {"target": "canvas", "deploymentId": dep})["httpStatus"] == 429
    ctl("mixpeek", "POST", "/knobs", {"rate_limits": {}, "errors": [
        {"route": "versions", "status": 500, "times": 10}]})
    assert err(s, "list_deployments", {"target": "canvas"})["httpStatus"] == 500
    ctl("mixpeek", "POST", "/knobs", {"errors": []})
    return dep


def drive_bluelink(s):
    ctl("bluelink", "POST", "/knobs", {"default_knobs": {"event_delay_ms": 20}})
    for target in ("bl_bearer", "bl_apikey", "bl_sig"):
        created = ok(s, "create_preview", {"target": target, "wait": True, "maxSeconds": 30})
        dep = created["deployment"]["id"]
        ok(s, "stream_events", {"target": target, "deploymentId": dep, "maxSeconds": 10})
        ok(s, "get_deployment", {"target": target, "deploymentId": dep})
        ok(s, "list_deployments", {"target": target})
        err(s, "tail_logs", {"target": target, "seconds": 1})
        publish_through_gate(s, target, dep, "reject" if target == "bl_sig" else "wrong")
        err(s, "get_deployment", {"target": target, "deploymentId": "changeset:nope"})
    # signatures that look stale to the engine: a clear 401
    ctl("bluelink", "POST", "/knobs", {"clock_offset_s": 400})
    assert err(s, "list_deployments", {"target": "bl_sig"})["httpStatus"] == 401
    ctl("bluelink", "POST", "/knobs", {"clock_offset_s": 0, "validation_diagnostics": [
        {"level": 1, "message": "bad blueprint"}]})
    err(s, "create_preview", {"target": "bl_apikey", "idempotencyKey": "sec-diagnostics"})
    ctl("bluelink", "POST", "/knobs", {"validation_diagnostics": None})


def collect(s):
    """stdin EOF, exit 0 without sanitizer reports; keeps everything written."""
    s.close_stdin()
    rc = s.wait_exit(20)
    s.reader.join(5)
    err_text = s.stderr()
    assert rc == 0, f"exit {rc}: {err_text[-3000:]}"
    for marker in SANITIZER_MARKERS:
        assert marker not in err_text, err_text[-6000:]
    outputs.append((f"stdout of {s.tmp}", s.stdout_bytes().decode(errors="replace")))
    outputs.append((f"stderr of {s.tmp}", err_text))
    for base in ("state", "xdg"):
        for dirpath, _, files in os.walk(os.path.join(s.tmp, base)):
            for fn in files:
                with open(os.path.join(dirpath, fn), "rb") as f:
                    outputs.append((os.path.join(dirpath, fn), f.read().decode(errors="replace")))


@suite.test
def every_tool_on_every_platform_with_debug_logging():
    s = start()
    drive_showly(s)
    drive_bigcommerce(s)
    drive_mixpeek(s)
    drive_bluelink(s)
    # the fakes really saw the credentials (so the grep below means something)
    assert any(r["headers"].get("authorization") == f"Bearer {S_TOKEN}"
               for r in fakes["showly"].requests())
    assert any(r["headers"].get("x-auth-token") == B_TOKEN for r in fakes["bigcommerce"].requests())
    assert any(r["headers"].get("authorization") == f"Bearer {M_KEY}"
               for r in fakes["mixpeek"].requests())
    auths = {r["auth"] for r in fakes["bluelink"].requests()}
    assert {"bearer", "apiKey", "signature"} <= auths, auths
    sigs = signatures()
    assert all(sigs.values()), {k: len(v) for k, v in sigs.items()}
    assert "debug" in s.stderr()
    collect(s)


@suite.test
def wrong_credentials_everywhere():
    s = start(env=dict(WRONG, DMCP_APPROVER=APPROVER))
    for target, name, args in (("web", "get_deployment", {"deploymentId": "dep_x"}),
                               ("web", "create_preview", {"branch": "main"}),
                               ("store", "create_preview", {"artifact": "bundle.zip"}),
                               ("store", "tail_logs", {"seconds": 1}),
                               ("canvas", "list_deployments", {}),
                               ("canvas", "create_preview", {"artifact": "site"}),
                               ("bl_bearer", "list_deployments", {}),
                               ("bl_apikey", "create_preview", {}),
                               ("bl_sig", "get_deployment", {"deploymentId": "sec-stack"})):
        e = err(s, name, dict(args, target=target))
        assert e["httpStatus"] in (401, 403), (target, name, e)
    collect(s)


@suite.test
def listener_with_auth_token_over_http_and_websocket():
    srv = Listener(config=config(), args=["--log-level", "debug"],
                   env=dict(ENV, DEPLOY_MCP_AUTH_TOKEN=AUTH_TOKEN))
    bodies = []
    auth = {"Authorization": f"Bearer {AUTH_TOKEN}"}
    try:
        # refused without, or with a wrong, token
        for h in ({}, {"Authorization": "Bearer " + WRONG["SHOWLY_TOKEN"]},
                  {"Authorization": AUTH_TOKEN}):
            st, hd, b = srv.request("POST", INIT, h)
            assert st == 401, st
            bodies.append(json.dumps(hd) + b.decode(errors="replace"))
        sid = srv.initialize(auth)
        dep = fakes["showly"].call("POST", "/_fake/deployments", {"siteId": "site_sec"})["id"]
        for name, args in (("list_targets", {}),
                           ("get_deployment", {"target": "web", "deploymentId": dep}),
                           ("stream_events", {"target": "web", "deploymentId": dep,
                                              "maxSeconds": 10}),
                           ("get_deployment", {"target": "canvas", "deploymentId": "dpl_nope"}),
                           ("list_deployments", {"target": "bl_sig"})):
            c = srv.conn(timeout=30)
            c.request("POST", "/mcp", body=json.dumps(
                {"jsonrpc": "2.0", "id": name, "method": "tools/call",
                 "params": {"name": name, "arguments": args, "_meta": {"progressToken": name}}}),
                headers=dict(auth, **{"Accept": ACCEPT, "Content-Type": "application/json",
                                      "Mcp-Session-Id": sid}))
            r = c.getresponse()
            raw = r.read()
            bodies.append(json.dumps(dict(r.getheaders())) + raw.decode(errors="replace"))
            assert r.status == 200 and b'"result"' in raw, (name, r.status, raw[:300])
            c.close()
        ws = WS(srv, headers=auth)
        assert ws.status == 101, ws.head
        bodies.append(ws.head)
        ws.send(INIT)
        bodies.append(json.dumps(ws.recv()))
        ws.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                 "params": {"name": "create_preview",
                            "arguments": {"target": "store", "artifact": "bundle.zip",
                                          "idempotencyKey": "ws-sec"}}})
        while True:
            m = ws.recv()
            bodies.append(json.dumps(m))
            if m.get("id") == 2:
                break
        ws.close()
        bad = WS(srv, headers={"Authorization": "Bearer nope"})
        assert bad.status == 401
        bodies.append(bad.head + bad.rest.decode(errors="replace"))
        bad.close()
    finally:
        rc = srv.stop(timeout=20)
        with open(srv.errpath, "rb") as f:
            err_text = f.read().decode(errors="replace")
        assert rc == 0, err_text[-3000:]
        for marker in SANITIZER_MARKERS:
            assert marker not in err_text, err_text[-6000:]
        outputs.append(("listener stderr", err_text))
        outputs.append(("listener responses", "\n".join(bodies)))


# ---- 2. artifact paths ---------------------------------------------------------

def uploads_count():
    return (len(ctl("bigcommerce", "GET", "/uploads")) +
            len(fakes["mixpeek"].call("GET", "/_fake/uploads")))


@suite.test
def artifacts_stay_inside_the_artifact_root():
    s = start()
    before = uploads_count()
    for target in ("store", "canvas"):
        for artifact in (os.path.join(outside, "bundle.zip"),     # absolute, outside
                         "../" + os.path.basename(outside) + "/bundle.zip",  # traversal
                         "site/../../" + os.path.basename(outside),
                         "escape/bundle.zip",                      # symlinked directory
                         "escape",
                         "link.zip",                                # symlinked file
                         "/etc/passwd", "/", ".."):
            e = err(s, "create_preview", {"target": target, "artifact": artifact})
            assert e["code"] == "artifact_outside_root", (target, artifact, e)
        # a directory inside the root that hides a link to a file outside
        e = err(s, "create_preview", {"target": target, "artifact": "sneaky"})
        assert "symlink" in e["message"] and "outside" in e["message"], (target, e)
    assert uploads_count() == before, "nothing may be uploaded from outside the root"
    # inside the root is fine
    ok(s, "create_preview", {"target": "canvas", "artifact": os.path.join(root, "site")})
    collect(s)
    # no artifactRoot: the working directory is the root
    cwd = os.path.join(root, "site")
    s = start(cwd=cwd, artifact_root=None)
    before = uploads_count()
    for target in ("store", "canvas"):
        for artifact in ("../bundle.zip", os.path.join(root, "bundle.zip"), "../escape"):
            e = err(s, "create_preview", {"target": target, "artifact": artifact})
            assert e["code"] == "artifact_outside_root", (target, artifact, e)
    assert uploads_count() == before
    ok(s, "create_preview", {"target": "canvas", "artifact": "."})
    collect(s)


# ---- 3. baseUrl from config only ------------------------------------------------

class Probe:
    """A loopback listener that records any connection made to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self.stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.hits += 1
                c.close()
            except OSError:
                continue

    def close(self):
        self.stop = True
        self.sock.close()


URLISH = re.compile(r"url|uri|host|endpoint|base|server|domain|origin|proxy|address|port",
                    re.IGNORECASE)


@suite.test
def base_url_comes_only_from_the_config():
    probe = Probe()
    s = start()
    try:
        tools = s.request("tools/list")["result"]["tools"]
        assert len(tools) >= 7
        for t in tools:
            schema = t["inputSchema"]
            assert schema.get("additionalProperties") is False, t["name"]
            for prop in schema.get("properties", {}):
                assert not URLISH.search(prop), (t["name"], prop)
        here = f"http://127.0.0.1:{probe.port}"
        required = {"stream_events": {"deploymentId": "dep_x"},
                    "get_deployment": {"deploymentId": "dep_x"},
                    "request_publish": {"sourceDeploymentId": "dep_x"}}
        for t in tools:
            base = dict(required.get(t["name"], {}))
            for extra in ("baseUrl", "url", "host", "endpoint", "apiBase"):
                r = result(s, t["name"], dict(base, **{extra: here}))
                e = structured(r)["error"] if r.get("isError") else None
                assert e and e["code"] == "invalid_arguments" and extra in e["message"], \
                    (t["name"], extra, r)
        # URL-looking values where strings are allowed never become the host
        fakes["showly"].call("DELETE", "/_fake/requests")
        ids = [here + "/x", "@127.0.0.1:%d" % probe.port, "../../../" + here, "x?u=" + here,
               "//127.0.0.1:%d/x" % probe.port, "x#frag", "%2e%2e/x"]
        for dep_id in ids:
            e = err(s, "get_deployment", {"target": "web", "deploymentId": dep_id})
            assert e["httpStatus"] == 404, (dep_id, e)
        # each id reached the configured host as one escaped path segment
        # (the fake unescapes: the id comes back intact, no query, no dots
        # resolved, nothing cut at '#')
        reqs = fakes["showly"].requests()
        assert [r["path"] for r in reqs] == ["/deployments/" + i for i in ids], \
            [r["path"] for r in reqs]
        assert all(not r["query"] for r in reqs), reqs
        e = err(s, "get_deployment", {"target": here, "deploymentId": "dep_x"})
        assert e["code"] == "unknown_target", e
        e = err(s, "create_preview", {"target": "canvas", "artifact": here + "/bundle.zip"})
        assert e["code"] in ("artifact_not_found", "artifact_outside_root"), e
        time.sleep(0.3)
        assert probe.hits == 0, "a tool argument redirected a request"
        collect(s)
    finally:
        probe.close()


# ---- last: everything collected above --------------------------------------

@suite.test
def no_secret_anywhere_in_what_the_server_wrote():
    secrets = secrets_seen()
    # 5 stdio servers (stdout + stderr each) and the listener (stderr + responses),
    # plus any file under their XDG state/config directories
    assert len(outputs) >= 12, [w for w, _ in outputs]
    for where, text in outputs:
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:6]}…) leaked into {where}"
        assert "X-Amz-Signature" not in text, f"a signed upload URL leaked into {where}"
        for b64 in (base64.b64encode(x.encode()).decode() for x in (S_TOKEN, B_TOKEN, M_KEY)):
            assert b64 not in text, f"a base64'd secret leaked into {where}"
    # with the approval gate, its journal was written and searched too
    if any(w.startswith("approval page") for w, _ in outputs):
        journals = [t for w, t in outputs if w.endswith("approvals.jsonl")]
        assert journals and any('"decision"' in t for t in journals), [w for w, _ in outputs]
    # and the debug logs were really on
    assert any("debug" in text for where, text in outputs if "stderr" in where)


if __name__ == "__main__":
    make_artifacts()
    fakes["showly"] = Fake("showly", token=S_TOKEN)
    fakes["bigcommerce"] = Fake("bigcommerce", token=B_TOKEN)
    fakes["mixpeek"] = Fake("mixpeek", token=M_KEY)
    fakes["bluelink"] = Fake("bluelink", token=BL_TOKEN,
                             extra_args=("--api-key", BL_KEY, "--key-id", BL_KEY_ID,
                                         "--secret", BL_SECRET))
    try:
        suite.run()
    finally:
        for s in servers:
            s.close()
        for f in fakes.values():
            f.close()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)
