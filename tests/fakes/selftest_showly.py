#!/usr/bin/env python3
"""Quick self-test of tests/fakes/showly_fake.py (stdlib only, ~5 s).

    python3 tests/fakes/selftest_showly.py

Prints one line per check and "N passed, N failed"; exits non-zero on failure.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from selftest_common import (Client as BaseClient, check, finish,  # noqa: E402
                             parse_sse, start as start_fake)

TOKEN = "sk_live_faketoken"


def start(*extra):
    return start_fake("showly", *extra)


class Client(BaseClient):
    def __init__(self, port):
        super().__init__(port, TOKEN)

    def deploy(self, site, body, key):
        h = {"Idempotency-Key": key} if key else {}
        return self.req("POST", "/sites/%s/deploy" % site, body, h)

    def stream(self, dep_id, headers=None, timeout=10, close_after=None):
        """Raw SSE GET; returns (status, headers text, body bytes), or with
        close_after (socket, headers text, body so far)."""
        path = "/deployments/%s/events" % dep_id
        if close_after is not None:
            return self.sse_open(path, headers, timeout)
        return self.sse_read(path, headers, timeout)[:3]


def main():
    proc, port = start("--exit-on-stdin-eof")
    c = Client(port)
    PREVIEW = {"environment": "preview", "commitSha": "abc1234def", "branch": "main"}

    def t_auth():
        st, _, js = c.req("GET", "/deployments", token=None)
        assert st == 401 and js["ok"] is False and js["error"]["code"] == "unauthorized", js
        st, _, js = c.req("GET", "/deployments", token="sk_live_wrong")
        assert st == 401 and js["error"]["code"] == "unauthorized"
        st, _, js = c.req("GET", "/deployments")
        assert st == 200 and js["ok"] is True and "items" in js["data"]

    def t_idempotency():
        st, _, js = c.deploy("site_1", PREVIEW, None)
        assert st == 428 and js["error"]["code"] == "idempotency_key_required", js
        st, _, js = c.deploy("site_1", PREVIEW, "k-1")
        assert st == 202 and js["data"]["id"].startswith("dep_"), js
        d = js["data"]
        assert d["status"] == "queued" and d["environment"] == "preview" and d["siteId"] == "site_1"
        assert d["commitSha"] == "abc1234def" and d["branch"] == "main" and d["createdAt"].endswith("Z")
        st, _, js2 = c.deploy("site_1", PREVIEW, "k-1")
        assert st == 202 and js2["data"]["id"] == d["id"], js2
        st, _, js3 = c.deploy("site_1", dict(PREVIEW, branch="dev"), "k-1")
        assert st == 409 and js3["error"]["code"] == "idempotency_conflict", js3
        st, _, js4 = c.deploy("site_missing", PREVIEW, "k-2")
        assert st == 404 and js4["error"]["code"] == "site_not_found", js4

    def t_production():
        st, _, js = c.deploy("site_1", {"environment": "production"}, "p-1")
        assert st == 428 and js["error"]["code"] == "source_deployment_required", js
        q = c.ctl("POST", "/deployments", {"siteId": "site_1", "knobs": {"hold": True}})
        st, _, js = c.deploy("site_1", {"environment": "production",
                                        "sourceDeploymentId": q["id"]}, "p-2")
        assert st == 409 and js["error"]["code"] == "source_not_ready", js
        r = c.ctl("POST", "/deployments", {"siteId": "site_1", "status": "ready"})
        assert r["status"] == "ready" and r["previewUrl"].endswith(".preview.showly.app")
        body = {"environment": "production", "sourceDeploymentId": r["id"]}
        st, _, js = c.deploy("site_1", body, "p-3")
        assert st == 428 and js["error"]["code"] == "approval_required", js
        det = js["error"]["details"]
        assert det["requestId"].startswith("apr_"), det
        assert det["webApprovalUrl"] == "https://app.showly.ai/approvals/" + det["requestId"]
        assert det["sourceDeploymentId"] == r["id"]
        st, _, again = c.deploy("site_1", body, "p-3")
        assert st == 428 and again["error"]["details"]["requestId"] == det["requestId"]
        ap = c.ctl("GET", "/approvals")
        mine = [a for a in ap["approvals"] if a["requestId"] == det["requestId"]]
        assert len(ap["approvals"]) == 1 and mine[0]["status"] == "pending", ap
        st, _, js = c.req("POST", "/approvals/%s/decision" % det["requestId"],
                          {"decision": "approve"})
        assert st == 403 and js["error"]["code"] == "self_approval_forbidden", js
        ap = c.ctl("GET", "/approvals")
        assert len(ap["decisionCalls"]) == 1 and ap["approvals"][0]["status"] == "pending"
        # nothing was published to production
        st, _, js = c.req("GET", "/deployments?environment=production")
        assert js["data"]["items"] == [], js

    def t_quota():
        c.ctl("POST", "/knobs", {"quota_exceeded": True})
        st, h, js = c.deploy("site_1", PREVIEW, "q-1")
        c.ctl("POST", "/knobs", {"quota_exceeded": False})
        assert st == 429 and js["error"]["code"] == "build_quota_exceeded", js
        assert "retry-after" not in h, h

    def t_pagination():
        ids = [c.ctl("POST", "/deployments", {"siteId": "site_p", "status": "ready"})["id"]
               for _ in range(5)]
        seen, cursor, pages = [], None, 0
        while True:
            path = "/sites/site_p/deployments?limit=2" + ("&cursor=" + cursor if cursor else "")
            st, _, js = c.req("GET", path)
            assert st == 200, js
            pi = js["data"]["pageInfo"]
            seen += [i["id"] for i in js["data"]["items"]]
            pages += 1
            assert pi["hasMore"] == (pi["nextCursor"] is not None)
            if not pi["hasMore"]:
                break
            cursor = pi["nextCursor"]
        assert pages == 3 and seen == ids[::-1], (pages, seen, ids)
        st, _, js = c.req("GET", "/deployments?siteId=site_p&limit=100")
        assert [i["id"] for i in js["data"]["items"]] == ids[::-1]
        st, _, js = c.req("GET", "/deployments?siteId=site_p&cursor=garbage!!")
        assert st == 400 and js["error"]["code"] == "invalid_cursor", js
        st, _, js = c.req("GET", "/deployments?siteId=site_p&status=building")
        assert js["data"]["items"] == []

    def t_sse_format():
        d = c.ctl("POST", "/deployments", {"siteId": "site_s", "knobs": {
            "crlf": True, "multiline": True, "keepalive_ms": 30, "slow_ms": 80}})
        st, head, body = c.stream(d["id"])
        assert st == 200 and "text/event-stream" in head, head
        assert b"\n" not in body.replace(b"\r\n", b""), "bare LF in CRLF mode"
        evs, comments = parse_sse(body)
        assert [e["id"] for e in evs] == [str(i) for i in range(1, 7)], evs
        assert comments >= 1, "no keep-alive comment"
        assert all("\n" in e["data"] for e in evs), "data not split over lines"
        datas = [json.loads(e["data"]) for e in evs]
        assert evs[0]["event"] == "status" and datas[0]["status"] == "building" and datas[0]["at"]
        assert all(e["event"] == "log" and x["stream"] == "build" and x["lines"]
                   for e, x in zip(evs[1:-1], datas[1:-1]))
        assert datas[-1]["status"] == "ready" and datas[-1]["previewUrl"].startswith("https://")

    def t_resume():
        d = c.ctl("POST", "/deployments", {"siteId": "site_s", "status": "ready"})
        t0 = time.monotonic()
        _, _, body = c.stream(d["id"], {"Last-Event-ID": "3"})
        evs, _ = parse_sse(body)
        assert [e["id"] for e in evs] == ["4", "5", "6"], evs
        _, _, body = c.stream(d["id"], {"Last-Event-ID": "6"})
        assert parse_sse(body)[0] == []
        _, _, body = c.stream(d["id"])
        assert len(parse_sse(body)[0]) == 6
        assert time.monotonic() - t0 < 1.0, "terminal replay should be quick"

    def t_drop():
        d = c.ctl("POST", "/deployments", {"siteId": "site_s", "knobs": {
            "drop_after": 2, "slow_ms": 30}})
        _, _, body = c.stream(d["id"])
        e1, _ = parse_sse(body)
        assert [e["id"] for e in e1] == ["1", "2"], e1
        _, _, body = c.stream(d["id"], {"Last-Event-ID": e1[-1]["id"]})
        e2, _ = parse_sse(body)
        assert [e["id"] for e in e2] == ["3", "4", "5", "6"], e2
        assert json.loads(e2[-1]["data"])["status"] == "ready"
        s = c.ctl("GET", "/streams")
        mine = [x for x in s["closed"] if x["deploymentId"] == d["id"]]
        assert [x["reason"] for x in mine] == ["dropped", "terminal"], mine

    def t_ids_off_invalid_utf8_fail():
        d = c.ctl("POST", "/deployments", {"siteId": "site_s", "status": "failed", "knobs": {
            "ids": False, "invalid_utf8": True, "fail": True}})
        _, _, body = c.stream(d["id"], {"Last-Event-ID": "3"})  # ignored without ids
        assert b"\nid:" not in body and b"\xff\xfe" in body and b"\xe2\x82\"" in body
        try:
            body.decode("utf-8")
            raise AssertionError("body should not be valid UTF-8")
        except UnicodeDecodeError:
            pass
        evs, _ = parse_sse(body)
        datas = [json.loads(e["data"]) for e in evs]  # valid JSON apart from the bytes
        assert datas[-1]["status"] == "failed" and datas[-1]["error"]["code"] == "build_failed"
        st, _, js = c.req("GET", "/deployments/" + d["id"])
        assert js["data"]["status"] == "failed" and js["data"]["error"]["code"] == "build_failed"
        st, _, js = c.req("GET", "/deployments/dep_nope")
        assert st == 404 and js["error"]["code"] == "deployment_not_found"

    def t_burst():
        d = c.ctl("POST", "/deployments", {"siteId": "site_s", "knobs": {
            "burst_lines": 20000, "burst_events": 20, "slow_ms": 10}})
        _, _, body = c.stream(d["id"])
        evs, _ = parse_sse(body)
        lines = sum(len(json.loads(e["data"])["lines"]) for e in evs if e["event"] == "log")
        assert lines == 20000 and len(evs) == 22, (lines, len(evs))

    def t_client_close_detected():
        d = c.ctl("POST", "/deployments", {"siteId": "site_h", "knobs": {"hang": True,
                                                                        "slow_ms": 10}})
        s, head, body = c.stream(d["id"], close_after=True)
        while body.count(b"\n\n") < 3:  # building + 2 logs, then it hangs
            body += s.recv(65536)
        time.sleep(0.2)
        st = c.ctl("GET", "/streams")
        assert st["open"] == 1, st
        closed_at = time.time()
        s.close()
        deadline = time.time() + 1.0
        while time.time() < deadline:
            st = c.ctl("GET", "/streams")
            mine = [x for x in st["closed"] if x["deploymentId"] == d["id"]]
            if mine:
                break
            time.sleep(0.05)
        assert mine and mine[0]["reason"] == "client_closed", st
        assert mine[0]["closedAt"] - closed_at < 1.0 and st["open"] == 0, mine
        st, _, js = c.req("GET", "/deployments/" + d["id"])
        assert js["data"]["status"] == "building", js  # hang withholds the terminal status
        c.ctl("POST", "/deployments/%s/finish" % d["id"], {"status": "canceled"})
        _, _, body = c.stream(d["id"], {"Last-Event-ID": "2"})
        evs, _ = parse_sse(body)
        assert json.loads(evs[-1]["data"])["status"] == "canceled", evs

    def t_wall_clock():
        st, _, js = c.deploy("site_w", PREVIEW, "w-1")
        assert js["data"]["status"] == "queued"
        time.sleep(0.8)
        st, _, js = c.req("GET", "/deployments/" + js["data"]["id"])
        assert js["data"]["status"] == "ready" and "preview.showly.app" in js["data"]["previewUrl"]

    def t_requests_recorded():
        reqs = c.ctl("GET", "/requests?path=/sites/site_w/deploy")
        assert len(reqs) == 1, reqs
        r = reqs[0]
        assert r["headers"]["authorization"] == "Bearer " + TOKEN
        assert r["headers"]["idempotency-key"] == "w-1" and r["body"] == PREVIEW, r
        assert r["status"] == 202 and r["method"] == "POST"
        evq = c.ctl("GET", "/requests?path=/deployments/*")
        assert any(x["headers"].get("last-event-id") == "3" for x in evq)

    def t_next_deploy():
        c.ctl("POST", "/knobs", {"next_deploy": {"script": [
            {"event": "status", "data": {"status": "building"}, "delay_ms": 0},
            {"event": "status", "data": {"status": "failed", "error": {
                "code": "build_failed", "message": "boom"}}, "delay_ms": 0}]}})
        st, _, js = c.deploy("site_n", PREVIEW, "n-1")
        _, _, body = c.stream(js["data"]["id"])
        evs, _ = parse_sse(body)
        assert len(evs) == 2 and json.loads(evs[1]["data"])["error"]["message"] == "boom"
        st, _, js = c.deploy("site_n", PREVIEW, "n-2")  # next one is back to default
        assert c.ctl("GET", "/deployments/" + js["data"]["id"])["_fake"]["eventCount"] == 6

    for name, fn in [("auth", t_auth), ("idempotency", t_idempotency),
                     ("production approval", t_production), ("quota 429", t_quota),
                     ("list pagination", t_pagination), ("sse crlf/multiline/keepalive", t_sse_format),
                     ("last-event-id resume", t_resume), ("drop knob", t_drop),
                     ("ids off / invalid utf8 / failed", t_ids_off_invalid_utf8_fail),
                     ("burst 20000 lines", t_burst), ("client close detected", t_client_close_detected),
                     ("wall-clock progress", t_wall_clock), ("requests recorded", t_requests_recorded),
                     ("next_deploy script", t_next_deploy)]:
        check(name, fn)

    return finish(proc, lambda: start("--exit-on-stdin-eof"))


if __name__ == "__main__":
    sys.exit(main())
