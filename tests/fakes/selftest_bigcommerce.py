#!/usr/bin/env python3
"""Quick self-test of tests/fakes/bigcommerce_fake.py (stdlib only, ~6 s).

    python3 tests/fakes/selftest_bigcommerce.py

Prints one line per check and "N passed, N failed"; exits non-zero on failure.
"""

import json
import os
import sys
import zipfile
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from selftest_common import (Client as BaseClient, check, finish,  # noqa: E402
                             make_zip as make_zip_of, start as start_fake)

TOKEN = "bc_selftest_token"
STORE = "/stores/abc123/v3"


def start():
    return start_fake("bigcommerce", "--token", TOKEN, "--exit-on-stdin-eof")


class Client(BaseClient):
    def __init__(self, port):
        super().__init__(port, TOKEN)

    def auth_headers(self, token):
        return {"X-Auth-Token": token}

    def sse(self, path, seconds=10):
        """Reads an SSE response until the server closes; returns (status, frames)."""
        status, _, body, _ = self.sse_read(path, {"Connection": "close"}, seconds)
        return status, [f for f in body.decode().split("\n\n") if f]


def data_of(frames):
    out = []
    for f in frames:
        for line in f.split("\n"):
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


def make_zip(names):
    return make_zip_of({n: "content of " + n for n in names}, zipfile.ZIP_DEFLATED)


def main():
    proc, port = start()
    c = Client(port)

    def upload(names=("output/index.js",), ctype="application/zip", data=None):
        st, _, js = c.req("POST", STORE + "/infrastructure/deployments/uploads", {})
        assert st == 200, (st, js)
        url, up = js["data"]["upload_url"], js["data"]["upload_uuid"]
        u = urlsplit(url)
        st2, _, body = c.req("PUT", u.path + "?" + u.query, token=None,
                             headers={"Content-Type": ctype},
                             raw=make_zip(names) if data is None else data)
        return up, url, st2, body

    def deploy(up, project="proj-1"):
        return c.req("POST", STORE + "/infrastructure/deployments",
                     {"upload_uuid": up, "project_uuid": project, "environment_variables": []})

    @check("auth: missing/bad X-Auth-Token -> 401 problem JSON")
    def _():
        st, _, js = c.req("POST", STORE + "/infrastructure/deployments/uploads", {},
                          token=None)
        assert st == 401 and js["status"] == 401 and js["title"], js
        st, _, js = c.req("POST", STORE + "/infrastructure/deployments/uploads", {},
                          token="wrong")
        assert st == 401, st

    @check("feature_disabled knob -> 403")
    def _():
        c.ctl("POST", "/knobs", {"feature_disabled": True})
        st, _, js = c.req("POST", STORE + "/infrastructure/deployments/uploads", {})
        assert st == 403 and "not enabled" in js["detail"], js
        c.ctl("POST", "/knobs", {"feature_disabled": False})

    @check("upload URL is signed, served by the fake, and checks signature + type")
    def _():
        up, url, st, _ = upload()
        assert st == 200, st
        assert "X-Amz-Signature=" in url and "/_upload/" + up in url, url
        u = urlsplit(url)
        st, _, body = c.req("PUT", u.path + "?" + u.query.replace("Signature=", "Signature=0"),
                            token=None, headers={"Content-Type": "application/zip"},
                            raw=make_zip(["output/a"]))
        assert st == 403 and "SignatureProvided" in body, (st, body)
        up2, _, st, _ = upload(ctype="application/octet-stream")
        assert st == 400, st
        up3, _, st, _ = upload(data=b"not a zip at all")
        assert st == 400, st
        ups = {u["upload_uuid"]: u for u in c.ctl("GET", "/uploads")}
        assert ups[up]["received"] and ups[up]["isZip"] and ups[up]["allUnderOutput"], ups[up]
        reqs = c.ctl("GET", "/requests?path=/_upload/*&method=PUT")
        assert reqs and all("x-auth-token" not in r["headers"] for r in reqs), reqs

    @check("upload over max_upload_bytes -> 413")
    def _():
        c.ctl("POST", "/knobs", {"max_upload_bytes": 1000})
        _, _, st, _ = upload(data=b"PK\x03\x04" + os.urandom(5000))
        assert st == 413, st
        c.ctl("POST", "/knobs", {"max_upload_bytes": 64 << 20})

    @check("create deployment: 422 field errors, 409 while one is in progress")
    def _():
        st, _, js = c.req("POST", STORE + "/infrastructure/deployments", {"x": 1})
        assert st == 422 and "upload_uuid" in js["errors"] and "project_uuid" in js["errors"], js
        c.ctl("POST", "/knobs", {"step_ms": 5000})
        up, _, _, _ = upload()
        st, _, js = deploy(up, "proj-409")
        assert st == 201 and js["data"]["deployment_uuid"], js
        st, _, js = deploy(up, "proj-409")
        assert st == 409 and js["status"] == 409, js
        c.ctl("POST", "/knobs", {"step_ms": 1000})

    @check("events: snapshots advance, server closes early, reconnect repeats current")
    def _():
        c.ctl("POST", "/knobs", {"step_ms": 150, "close_after_ms": 400})
        dep = c.ctl("POST", "/deployments", {"project_uuid": "proj-ev"})
        path = STORE + "/infrastructure/deployments/%s/events" % dep["deployment_uuid"]
        st, frames = c.sse(path)
        assert st == 200 and all(f.startswith("event: message\n") for f in frames), frames
        first = data_of(frames)
        assert first[0]["deployment_status"] == "queued" and first[0]["event"] is None, first
        assert first[-1]["deployment_status"] != "completed", first  # closed mid-deployment
        st, frames = c.sse(path)
        second = data_of(frames)
        assert second[0] in (first[-1], ) or second[0]["event"]["progress"] >= \
            (first[-1]["event"] or {"progress": 0})["progress"], (first[-1], second[0])
        seen = first + second
        while seen[-1]["deployment_status"] != "completed":
            st, frames = c.sse(path)
            seen += data_of(frames)
        last = seen[-1]
        assert last["event"] == {"step": "complete", "progress": 100}, last
        assert last["deployment_url"].startswith("https://"), last
        closed = [s for s in c.ctl("GET", "/streams")["closed"] if s["kind"] == "events"]
        assert any(s["reason"] == "timeout" for s in closed), closed
        assert closed[-1]["reason"] == "terminal", closed
        distinct = []
        for s in seen:
            if not distinct or distinct[-1] != s:
                distinct.append(s)
        info = c.ctl("GET", "/deployments/" + dep["deployment_uuid"])
        assert distinct == info["snapshots"], (distinct, info["snapshots"])

    @check("events: fail_code and hostnames knobs")
    def _():
        c.ctl("POST", "/knobs", {"step_ms": 50, "close_after_ms": 5000})
        dep = c.ctl("POST", "/deployments", {"knobs": {"fail_code": 20}})
        _, frames = c.sse(STORE + "/infrastructure/deployments/%s/events"
                          % dep["deployment_uuid"])
        last = data_of(frames)[-1]
        assert last["deployment_status"] == "failed" and last["error"] == {"code": 20}, last
        dep = c.ctl("POST", "/deployments", {"knobs": {"hostnames": True}})
        _, frames = c.sse(STORE + "/infrastructure/deployments/%s/events"
                          % dep["deployment_uuid"])
        last = data_of(frames)[-1]
        assert "deployment_url" not in last and last["deployment_hostnames"], last
        dep = c.ctl("POST", "/deployments", {"knobs": {"fail_code": 60}})
        _, frames = c.sse(STORE + "/infrastructure/deployments/%s/events"
                          % dep["deployment_uuid"])
        last = data_of(frames)[-1]
        assert last["deployment_status"] == "completed" and last["error"] == {"code": 60}, last
        st, _ = c.sse(STORE + "/infrastructure/deployments/nope/events")
        assert st == 404, st

    @check("bundle not under output/ -> deployment error 40")
    def _():
        c.ctl("POST", "/knobs", {"step_ms": 30})
        up, _, st, _ = upload(names=("index.js",))
        assert st == 200
        st, _, js = deploy(up, "proj-40")
        assert st == 201, js
        _, frames = c.sse(STORE + "/infrastructure/deployments/%s/events"
                          % js["data"]["deployment_uuid"])
        assert data_of(frames)[-1]["error"] == {"code": 40}, frames

    @check("logs tail: levels, requests, exceptions, keep-alives, 60 s end knob")
    def _():
        c.ctl("POST", "/knobs", {"log_interval_ms": 100, "logs_close_after_ms": 700,
                                 "logs_keepalive_ms": 50})
        st, frames = c.sse(STORE + "/infrastructure/logs/proj-logs/tail")
        assert st == 200
        assert any(f.startswith(": keep-alive") for f in frames), frames
        evs = data_of(frames)
        assert len(evs) >= 4, evs
        levels = {lg["level"] for e in evs for lg in e["logs"]}
        assert {"info", "warn", "error", "debug"} <= levels, levels
        assert any(e["request"] for e in evs) and any(e["exceptions"] for e in evs), evs
        closed = [s for s in c.ctl("GET", "/streams")["closed"] if s["kind"] == "logs"]
        assert closed[-1]["reason"] == "timeout", closed

    @check("429 with X-Rate-Limit-Time-Reset-Ms")
    def _():
        c.ctl("POST", "/knobs", {"rate_limit": {"times": 2, "reset_ms": 1234}})
        st, h, js = c.req("POST", STORE + "/infrastructure/deployments/uploads", {})
        assert st == 429 and h["x-rate-limit-time-reset-ms"] == "1234", (st, h)
        c.req("POST", STORE + "/infrastructure/deployments/uploads", {})
        st, _, _ = c.req("POST", STORE + "/infrastructure/deployments/uploads", {})
        assert st == 200, st

    @check("requests are recorded with headers; reset clears")
    def _():
        reqs = c.ctl("GET", "/requests?path=" + STORE + "/infrastructure/deployments/uploads")
        assert reqs and reqs[-1]["headers"]["x-auth-token"] == TOKEN, reqs[-1]
        c.ctl("POST", "/reset")
        assert c.ctl("GET", "/requests") == [] and c.ctl("GET", "/deployments") == []

    return finish(proc, start)


if __name__ == "__main__":
    sys.exit(main())
