#!/usr/bin/env python3
"""Quick self-test of tests/fakes/mixpeek_fake.py (stdlib only, ~5 s).

    python3 tests/fakes/selftest_mixpeek.py

Prints one line per check and "N passed, N failed"; exits non-zero on failure.
"""

import json
import os
import sys
import time
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from selftest_common import (Client as BaseClient, check, finish,  # noqa: E402
                             make_zip, parse_sse, start as start_fake)

TOKEN = "mxp_sk_selftest"
APP = "/v1/apps/app_test"


def start(*extra):
    return start_fake("mixpeek", "--token", TOKEN, *extra)


class Client(BaseClient):
    def __init__(self, port):
        super().__init__(port, TOKEN)

    def stream(self, dep_id, headers=None, until_close=True, timeout=10):
        """Raw SSE GET of the deploy log: (status, head, body bytes) or the socket."""
        path = "%s/deploys/%s/logs/stream" % (APP, dep_id)
        if not until_close:
            return self.sse_open(path, headers, timeout)
        return self.sse_read(path, headers, timeout)[:3]

    def upload(self, app="app_test", files=None, raw=None, filename="site.zip"):
        st, _, js = self.req("POST", "/v1/apps/%s/deploy/upload-url" % app,
                             {"filename": filename, "content_type": "application/zip"})
        assert st == 200, js
        u = urlsplit(js["upload_url"])
        body = raw if raw is not None else make_zip(files or {"index.html": "<h1>x</h1>"})
        st2, _, _ = self.req("PUT", u.path + "?" + u.query, body,
                             {"Content-Type": "application/zip"}, token=None)
        assert st2 == 200, st2
        return js


def lines_of(events):
    return [json.loads(e["data"].encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            ["line"] for e in events if e["event"] == "message"]


def main():
    proc, port = start("--exit-on-stdin-eof")
    c = Client(port)

    def t_auth():
        for tok in (None, "wrong"):
            st, _, js = c.req("GET", APP + "/versions", token=tok)
            assert st == 403 and js["success"] is False and js["status"] == 403, js
            assert js["error"]["type"] == "UnauthorizedError" and js["error"]["message"], js
        st, _, js = c.req("GET", APP + "/versions")
        assert st == 200 and js["versions"] == [], js
        st, _, js = c.req("GET", "/v1/apps/app_missing/versions")
        assert st == 404 and js["error"]["type"] == "NotFoundError", js

    def t_upload_and_deploy():
        st, _, js = c.req("POST", APP + "/deploy/upload-url",
                          {"filename": "a.zip", "content_type": "text/plain"})
        assert st == 422 and js["error"]["type"] == "ValidationError", js
        assert js["error"]["details"][0]["loc"] == ["body", "content_type"], js
        st, _, up = c.req("POST", APP + "/deploy/upload-url",
                          {"filename": "site.zip", "content_type": "application/zip"})
        assert st == 200 and up["expires_in"] == 900 and up["bundle_s3_key"].endswith("site.zip")
        u = urlsplit(up["upload_url"])
        assert u.port == port and "X-Amz-Signature=" in u.query, up
        zbytes = make_zip({"index.html": "hi", "js/app.js": "1"})
        key = up["bundle_s3_key"]
        # deploy before the upload
        st, _, js = c.req("POST", APP + "/deploy", {"bundle_s3_key": key,
                                                    "environment": "staging"})
        assert st == 400 and js["error"]["type"] == "BadRequestError", js
        # storage rules: no Authorization, signed query, signed content type
        st, _, body = c.req("PUT", u.path + "?" + u.query, zbytes,
                            {"Content-Type": "application/zip"})
        assert st == 400 and "Only one auth mechanism" in body, body
        st, _, body = c.req("PUT", u.path + "?X-Amz-Signature=bad", zbytes,
                            {"Content-Type": "application/zip"}, token=None)
        assert st == 403 and "SignatureDoesNotMatch" in body, body
        st, _, body = c.req("PUT", u.path + "?" + u.query, zbytes,
                            {"Content-Type": "application/octet-stream"}, token=None)
        assert st == 403, body
        st, _, _ = c.req("PUT", u.path + "?" + u.query, zbytes,
                         {"Content-Type": "application/zip"}, token=None)
        assert st == 200
        [rec] = [x for x in c.ctl("GET", "/uploads") if x["bundle_s3_key"] == key]
        assert rec["validZip"] and rec["entries"] == ["index.html", "js/app.js"], rec
        assert "signature" not in rec
        st, _, js = c.req("POST", APP + "/deploy", {"environment": "dev", "bundle_s3_key": key})
        assert st == 422 and js["error"]["details"][0]["loc"] == ["body", "environment"], js
        st, _, js = c.req("POST", APP + "/deploy", {"bundle_s3_key": "nope"})
        assert st == 404 and js["error"]["type"] == "NotFoundError", js
        st, _, js = c.req("POST", APP + "/deploy", {"message": "m", "environment": "staging",
                                                    "source": "cli_upload", "bundle_s3_key": key})
        assert st == 200 and js["status"] == "queued" and js["environment"] == "staging", js
        assert js["deploy_id"].startswith("dpl_") and js["app_id"] == "app_test"
        st, _, js = c.req("POST", APP + "/deploy", {"bundle_s3_key": key})
        assert st == 200 and js["environment"] == "production", js  # the risky default
        bad = c.upload(raw=b"not a zip")
        st, _, js = c.req("POST", APP + "/deploy", {"environment": "staging",
                                                    "bundle_s3_key": bad["bundle_s3_key"]})
        assert st == 422 and "zip" in js["error"]["message"], js

    def t_wall_clock():
        up = c.upload()
        _, _, js = c.req("POST", APP + "/deploy", {"environment": "staging",
                                                   "bundle_s3_key": up["bundle_s3_key"]})
        dep = js["deploy_id"]
        seen = []
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:
            _, _, d = c.req("GET", APP + "/deploys/" + dep)
            if not seen or seen[-1] != d["status"]:
                seen.append(d["status"])
            if d["status"] == "complete":
                break
            time.sleep(0.03)
        assert seen == ["queued", "building", "complete"], seen
        assert d["environment"] == "staging" and d["error"] is None
        assert d["queued_at"].endswith("Z") and d["completed_at"], d
        f = c.ctl("POST", "/deploys", {"status": "failed"})
        _, _, d = c.req("GET", APP + "/deploys/" + f["deploy_id"])
        assert d["status"] == "failed" and d["error"], d
        st, _, js = c.req("GET", APP + "/deploys/dpl_nope")
        assert st == 404 and js["error"]["type"] == "NotFoundError"

    def t_versions():
        _, _, js = c.req("GET", APP + "/versions")
        vs = js["versions"]
        assert vs and all("status" not in v for v in vs), vs
        assert [v["version"] for v in vs] == list(range(1, len(vs) + 1))
        assert all(v["deploy_id"].startswith("dpl_") and v["created_at"].endswith("Z")
                   for v in vs), vs
        v = c.ctl("POST", "/versions", {"message": "seeded"})
        _, _, js = c.req("GET", APP + "/versions")
        assert js["versions"][-1]["version_id"] == v["version_id"] and js["total"] == len(vs) + 1

    def t_stream_format_cached_then_live():
        d = c.ctl("POST", "/deploys", {"knobs": {"lines": 6, "line_delay_ms": 120}})
        time.sleep(0.45)   # ≈ 3 lines cached
        s, head, body = c.stream(d["deploy_id"], until_close=False)
        assert head.startswith("HTTP/1.1 200") and "text/event-stream" in head, head
        t0 = time.monotonic()
        arrivals = []
        while b"event: done" not in body:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
            arrivals.append((time.monotonic() - t0, body.count(b"data: {\"ts\"")))
        s.close()
        evs, _ = parse_sse(body)
        assert lines_of(evs) == ["deploy line %d/6" % i for i in range(1, 7)], evs
        assert evs[-1] == {"event": "done", "id": None, "data": "{}"}, evs[-1]
        assert all(e["id"] is None for e in evs) and b"\nid:" not in body
        ts = [json.loads(e["data"])["ts"] for e in evs[:-1]]
        assert ts == sorted(ts) and ts == d["_fake"]["timestamps"], ts
        # Cached lines come in the first read; the rest arrive live, later.
        # (Measured from the first read, so a loaded machine does not matter.)
        assert arrivals, arrivals
        t_first = arrivals[0][0]
        burst = max(n for t, n in arrivals if t - t_first < 0.05)
        assert burst >= 2, arrivals                          # cached lines at once
        assert arrivals[-1][0] - t_first > 0.15, arrivals    # the rest live

    def t_replay_and_drops():
        d = c.ctl("POST", "/deploys", {"status": "complete", "knobs": {"lines": 10,
                                                                       "drop_after": 3}})
        _, _, b1 = c.stream(d["deploy_id"])
        e1, _ = parse_sse(b1)
        assert len(e1) == 3 and all(e["event"] == "message" for e in e1), e1
        _, _, b2 = c.stream(d["deploy_id"])
        e2, _ = parse_sse(b2)
        assert len(lines_of(e2)) == 10 and e2[-1]["event"] == "done", e2  # full replay
        assert lines_of(e2)[:3] == lines_of(e1)
        d = c.ctl("POST", "/deploys", {"status": "complete", "knobs": {
            "lines": 10, "drop_every": 4, "drop_partial": True}})
        got, conns = [], 0
        while True:
            _, _, b = c.stream(d["deploy_id"])
            conns += 1
            evs, _ = parse_sse(b)
            lines = lines_of(evs)
            assert lines[:len(got)] == got, "a reconnect did not replay earlier lines"
            got = lines
            if evs and evs[-1]["event"] == "done":
                break
            assert not b.endswith(b"\n\n"), "drop_partial should cut an event"
            assert conns < 10
        assert conns == 3 and len(got) == 10, (conns, got)
        st = c.ctl("GET", "/streams")
        mine = [x for x in st["closed"] if x["deployId"] == d["deploy_id"]]
        assert [x["reason"] for x in mine] == ["dropped", "dropped", "done"], mine
        assert [x["linesSent"] for x in mine] == [4, 8, 10], mine

    def t_invalid_utf8_and_burst():
        d = c.ctl("POST", "/deploys", {"status": "complete", "knobs": {
            "lines": 3, "invalid_utf8": True}})
        _, _, body = c.stream(d["deploy_id"])
        assert b"\xff\xfe\"}" in body and b"\xe2\x82\"}" in body, body
        evs, _ = parse_sse(body)
        assert lines_of(evs) == d["_fake"]["lines"], (lines_of(evs), d["_fake"]["lines"])
        assert d["_fake"]["lines"][1].endswith(" \ufffd\ufffd")
        assert d["_fake"]["lines"][2].endswith(" \ufffd")
        d = c.ctl("POST", "/deploys", {"knobs": {"burst": 5000, "queued_ms": 0}})
        time.sleep(0.05)
        _, _, body = c.stream(d["deploy_id"])
        evs, _ = parse_sse(body)
        assert len(lines_of(evs)) == 5000 and evs[-1]["event"] == "done"

    def t_rate_limit_and_errors():
        c.ctl("POST", "/knobs", {"rate_limits": {"versions": 2}})
        codes = [c.req("GET", APP + "/versions")[0] for _ in range(3)]
        st, h, js = c.req("GET", APP + "/versions")
        c.ctl("POST", "/knobs", {"rate_limits": {}})
        assert codes == [200, 200, 429] and st == 429, codes
        assert js["error"]["type"] == "TooManyRequestsError" and "retry-after" not in h, (h, js)
        assert c.req("GET", APP + "/versions")[0] == 200
        c.ctl("POST", "/knobs", {"errors": [{"route": "get-deploy", "status": 500,
                                              "message": "boom", "times": 1}]})
        st, _, js = c.req("GET", APP + "/deploys/dpl_x")
        assert st == 500 and js["error"]["type"] == "InternalServerError", js
        st, _, js = c.req("GET", APP + "/deploys/dpl_x")
        assert st == 404, js

    def t_namespace_and_records():
        c.ctl("DELETE", "/requests")
        c.ctl("POST", "/knobs", {"required_namespace": "ns1"})
        st, _, js = c.req("GET", APP + "/versions")
        assert st == 404, js
        st, _, js = c.req("GET", APP + "/versions", headers={"X-Namespace": "ns1"})
        assert st == 200, js
        c.ctl("POST", "/knobs", {"required_namespace": None})
        reqs = c.ctl("GET", "/requests?route=versions")
        assert [r["status"] for r in reqs] == [404, 200], reqs
        assert reqs[1]["headers"]["x-namespace"] == "ns1"
        assert reqs[1]["headers"]["authorization"] == "Bearer " + TOKEN

    def t_hang_and_client_close():
        d = c.ctl("POST", "/deploys", {"knobs": {"lines": 2, "line_delay_ms": 10,
                                                 "hang": True, "keepalive_ms": 50}})
        s, _, body = c.stream(d["deploy_id"], until_close=False)
        t_end = time.monotonic() + 2
        while ((body.count(b": keep-alive") < 2 or body.count(b"deploy line") < 2)
               and time.monotonic() < t_end):
            body += s.recv(65536)
        assert len(lines_of(parse_sse(body)[0])) == 2 and b"done" not in body, body
        _, _, js = c.req("GET", APP + "/deploys/" + d["deploy_id"])
        assert js["status"] == "building", js
        closed_at = time.time()
        s.close()
        mine = []
        while time.time() < closed_at + 1.5 and not mine:
            st = c.ctl("GET", "/streams")
            mine = [x for x in st["closed"] if x["deployId"] == d["deploy_id"]]
            time.sleep(0.05)
        assert mine and mine[0]["reason"] == "client_closed", mine
        assert mine[0]["closedAt"] - closed_at < 1.0
        c.ctl("POST", "/deploys/%s/knobs" % d["deploy_id"], {"hang": None})
        _, _, body = c.stream(d["deploy_id"])
        assert parse_sse(body)[0][-1]["event"] == "done"

    def t_next_deploy_and_reset():
        c.ctl("POST", "/knobs", {"next_deploy": {"knobs": {"outcome": "failed"}}})
        up = c.upload()
        _, _, js = c.req("POST", APP + "/deploy", {"environment": "staging",
                                                   "bundle_s3_key": up["bundle_s3_key"]})
        d = c.ctl("GET", "/deploys/" + js["deploy_id"])
        assert d["_fake"]["knobs"]["outcome"] == "failed", d
        assert d["_fake"]["lines"][-2].startswith("ERROR"), d
        c.ctl("POST", "/reset")
        assert c.ctl("GET", "/deploys") == [] and c.ctl("GET", "/requests") == []

    for name, fn in [("auth 403 envelope", t_auth), ("upload + deploy rules", t_upload_and_deploy),
                     ("wall-clock status", t_wall_clock), ("versions", t_versions),
                     ("stream: cached then live, done", t_stream_format_cached_then_live),
                     ("stream: replay on reconnect, drops", t_replay_and_drops),
                     ("invalid utf8 / burst", t_invalid_utf8_and_burst),
                     ("rate limit 429 / injected errors", t_rate_limit_and_errors),
                     ("namespace / requests recorded", t_namespace_and_records),
                     ("hang, keep-alive, client close", t_hang_and_client_close),
                     ("next_deploy / reset", t_next_deploy_and_reset)]:
        check(name, fn)

    return finish(proc, lambda: start("--exit-on-stdin-eof"))


if __name__ == "__main__":
    sys.exit(main())
