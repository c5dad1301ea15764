#!/usr/bin/env python3
"""Quick self-test of tests/fakes/bluelink_fake.py (stdlib only, ~5 s).

    python3 tests/fakes/selftest_bluelink.py

Prints one line per check and "N passed, N failed"; exits non-zero on failure.
Signatures are computed here independently of the fake's own helper.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from selftest_common import (Client as BaseClient, check, finish,  # noqa: E402
                             start as start_fake)

TOKEN, API_KEY, KEY_ID, SECRET = "jwt-selftest", "key-selftest", "kid-selftest", "sec-selftest"
FAST = {"event_delay_ms": 20}


def start():
    return start_fake("bluelink", "--token", TOKEN, "--api-key", API_KEY, "--key-id", KEY_ID,
                      "--secret", SECRET, "--exit-on-stdin-eof")


def signature(secret, key_id, date, extra=""):
    msg = ("%s,bluelink-date=%d%s" % (key_id, date, extra)).encode()
    sig = base64.urlsafe_b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest())
    return sig.decode().rstrip("=")


def sig_headers(secret=SECRET, key_id=KEY_ID, skew=0):
    date = int(time.time()) + skew
    return {"Bluelink-Date": str(date), "Bluelink-Signature-V1":
            'keyId="%s", headers="bluelink-date", signature="%s"'
            % (key_id, signature(secret, key_id, date))}


class Client(BaseClient):
    def __init__(self, port):
        super().__init__(port, API_KEY)

    def auth_headers(self, token):
        return {"Bluelink-Api-Key": token}

    def req(self, method, path, body=None, headers=None, auth="key"):
        """(status, JSON); auth="key" sends the API key, None nothing."""
        st, _, js = self.call(method, path, body, headers, token=API_KEY if auth == "key" else None)
        return st, js

    def stream(self, path, last_id=None, timeout=5.0):
        """Raw SSE GET; returns (events [(type, id, data)], closed_by_server)."""
        st, head, body, closed = self.sse_read(
            path, {"Last-Event-ID": last_id} if last_id else None, timeout)
        assert st == 200, head
        events = []
        for block in body.decode().split("\n\n"):
            f = {}
            for line in block.split("\n"):
                if ":" in line:
                    k, _, v = line.partition(":")
                    f[k] = v[1:] if v.startswith(" ") else v
            if "data" in f:
                events.append((f.get("event"), f.get("id"), json.loads(f["data"])))
        return events, closed


def main():
    proc, port = start()
    c = Client(port)
    body = {"fileSourceScheme": "file", "directory": "infra", "blueprintFile": "app.blueprint.yml",
            "instanceName": "prod", "config": {}}

    def stage(knobs=None):
        c.ctl("POST", "/reset")
        c.ctl("POST", "/knobs", {"default_knobs": dict(FAST, **(knobs or {}))})
        st, js = c.req("POST", "/v1/deployments/changes", body)
        assert st == 202, (st, js)
        return js

    @check("auth: none/bad → 401 {message: Unauthorized}; bearer, api key, signature ok")
    def _():
        st, js = c.req("GET", "/v1/deployments/instances", auth=None)
        assert st == 401 and js == {"message": "Unauthorized"}, (st, js)
        assert c.req("GET", "/v1/deployments/instances",
                     headers={"Authorization": "Bearer " + TOKEN}, auth=None)[0] == 200
        assert c.req("GET", "/v1/deployments/instances",
                     headers={"Authorization": "Bearer nope"}, auth=None)[0] == 401
        assert c.req("GET", "/v1/deployments/instances")[0] == 200
        assert c.req("GET", "/v1/deployments/instances",
                     headers={"Bluelink-Api-Key": "nope"}, auth=None)[0] == 401
        assert c.req("GET", "/v1/deployments/instances", headers=sig_headers(),
                     auth=None)[0] == 200
        reqs = c.ctl("GET", "/requests?path=/v1/deployments/instances")
        assert [r["auth"] for r in reqs] == [None, "bearer", None, "apiKey", None,
                                             "signature"], [r["auth"] for r in reqs]

    @check("signature: wrong secret, unknown key, skew > 300 s, padding, format → 401")
    def _():
        bad = [sig_headers(secret="wrong"), sig_headers(key_id="other"),
               sig_headers(skew=-301), sig_headers(skew=301)]
        h = sig_headers()
        h["Bluelink-Signature-V1"] = h["Bluelink-Signature-V1"][:-1] + '="'
        bad.append(h)
        h = sig_headers()
        h["Bluelink-Signature-V1"] = h["Bluelink-Signature-V1"].replace(", headers", " headers")
        bad.append(h)
        h = sig_headers()
        del h["Bluelink-Date"]
        bad.append(h)
        for hh in bad:
            st, js = c.req("GET", "/v1/deployments/instances", headers=hh, auth=None)
            assert st == 401 and js == {"message": "Unauthorized"}, (hh, st, js)
        for skew in (-299, 299):
            assert c.req("GET", "/v1/deployments/instances", headers=sig_headers(skew=skew),
                         auth=None)[0] == 200
        # a further signed header is appended to the message in order
        date = int(time.time())
        h = {"Bluelink-Date": str(date), "X-Req": "abc", "Bluelink-Signature-V1":
             'keyId="%s", headers="bluelink-date x-req", signature="%s"'
             % (KEY_ID, signature(SECRET, KEY_ID, date, ",x-req=abc"))}
        assert c.req("GET", "/v1/deployments/instances", headers=h, auth=None)[0] == 200
        c.ctl("POST", "/knobs", {"clock_offset_s": 400})
        assert c.req("GET", "/v1/deployments/instances", headers=sig_headers(),
                     auth=None)[0] == 401
        c.ctl("POST", "/knobs", {"clock_offset_s": 0})

    @check("change set: 422 errors[] for a missing directory; 202 shape; STARTING")
    def _():
        st, js = c.req("POST", "/v1/deployments/changes", {"fileSourceScheme": "file"})
        assert st == 422 and js["errors"][0]["location"] == "directory", (st, js)
        js = stage()
        d = js["data"]
        assert d["status"] == "STARTING" and d["id"] and "lastEventId" not in js, js
        assert d["blueprintLocation"] == "file://infra/app.blueprint.yml"

    @check("change set stream: resource/child/link changes then changeStagingComplete; ids UUIDv7")
    def _():
        d = stage()["data"]
        evs, closed = c.stream("/v1/deployments/changes/%s/stream" % d["id"])
        types = [e[0] for e in evs]
        assert types == ["resourceChanges"] * 4 + ["childChanges", "linkChanges",
                                                   "changeStagingComplete"], types
        assert closed
        ids = [e[1] for e in evs]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert all(i[14] == "7" and i[19] in "89ab" for i in ids), ids
        ch = evs[-1][2]["changes"]
        assert set(ch["newResources"]) == {"ordersTable", "ordersApi"}
        assert ch["removedResources"] == ["legacyQueue"]
        cs = c.ctl("GET", "/changesets/" + d["id"])
        assert cs["status"] == "CHANGES_STAGED", cs["status"]

    @check("change set knobs: drift → driftDetected; error → error event; plan")
    def _():
        d = stage({"drift": True})["data"]
        evs, closed = c.stream("/v1/deployments/changes/%s/stream" % d["id"])
        assert [e[0] for e in evs] == ["driftDetected"] and closed, evs
        assert evs[0][2]["reconciliationResult"]["resources"][0]["resourceName"] == "assetsBucket"
        assert c.ctl("GET", "/changesets/" + d["id"])["status"] == "DRIFT_DETECTED"
        d = stage({"error": "bad blueprint"})["data"]
        evs, _ = c.stream("/v1/deployments/changes/%s/stream" % d["id"])
        assert [e[0] for e in evs] == ["resourceChanges"] * 2 + ["error"], evs
        assert evs[-1][2]["message"] == "bad blueprint"
        assert c.ctl("GET", "/changesets/" + d["id"])["status"] == "FAILED"
        d = stage({"plan": [{"resource": "db", "action": "recreate"}]})["data"]
        evs, _ = c.stream("/v1/deployments/changes/%s/stream" % d["id"])
        assert evs[0][2]["changes"]["mustRecreate"] is True
        assert list(evs[-1][2]["changes"]["resourceChanges"]) == ["db"]

    @check("stale_events: POST lastEventId; Last-Event-ID excludes the stale ones")
    def _():
        js = stage({"stale_events": 2})
        d = js["data"]
        assert js.get("lastEventId"), js
        evs, _ = c.stream("/v1/deployments/changes/%s/stream" % d["id"])
        assert [e[2].get("resourceName") for e in evs[:2]] == ["staleResource1", "staleResource2"]
        evs2, _ = c.stream("/v1/deployments/changes/%s/stream" % d["id"], js["lastEventId"])
        assert [e[1] for e in evs2] == [e[1] for e in evs[2:]]

    @check("instance stream: exclusive Last-Event-ID resume; drop_after; sentIds")
    def _():
        c.ctl("POST", "/reset")
        inst = c.ctl("POST", "/instances", {"name": "prod", "knobs": dict(FAST, drop_after=3)})
        path = "/v1/deployments/instances/%s/stream" % inst["instanceId"]
        evs1, closed = c.stream(path)
        assert len(evs1) == 3 and closed, evs1
        evs2, closed = c.stream(path, evs1[-1][1])
        assert closed and evs2[-1][0] == "finish" and evs2[-1][2]["endOfStream"] is True
        all_ids = [e[1] for e in evs1 + evs2]
        assert len(all_ids) == len(set(all_ids)) == len(inst["_fake"]["events"])
        st = c.ctl("GET", "/streams")
        recs = sorted(st["closed"], key=lambda r: r["connection"])
        assert recs[0]["reason"] == "dropped" and recs[1]["reason"] == "end", recs
        assert recs[1]["requestLastEventId"] == evs1[-1][1] == recs[0]["lastEventId"]
        assert recs[0]["sentIds"] + recs[1]["sentIds"] == all_ids
        # resuming by name works too; after the end event nothing more is sent
        evs3, closed = c.stream("/v1/deployments/instances/prod/stream", all_ids[-1], timeout=0.6)
        assert evs3 == [] and not closed
        # a server that ignores Last-Event-ID replays the window instead
        c.ctl("POST", "/instances/prod/knobs", {"ignore_last_event_id": True})
        evs4, closed = c.stream("/v1/deployments/instances/prod/stream", all_ids[-1])
        assert [e[1] for e in evs4] == all_ids and closed

    @check("instance stream: without Last-Event-ID only the last 300 s are replayed")
    def _():
        c.ctl("POST", "/reset")
        old = c.ctl("POST", "/instances", {"name": "stack", "knobs": FAST, "backdate_s": 400})
        again = c.ctl("POST", "/instances", {"name": "stack"})
        assert again["lastEventId"] == old["_fake"]["events"][-1]["id"]
        evs, closed = c.stream("/v1/deployments/instances/stack/stream")
        new_ids = [e["id"] for e in again["_fake"]["events"]][len(old["_fake"]["events"]):]
        assert [e[1] for e in evs] == new_ids and closed
        assert evs[0][2]["status"] == 13  # UPDATING: a second deployment

    @check("hang withholds the end event; the stream stays open")
    def _():
        c.ctl("POST", "/reset")
        c.ctl("POST", "/instances", {"name": "h", "knobs": dict(FAST, hang=True)})
        evs, closed = c.stream("/v1/deployments/instances/h/stream", timeout=1.0)
        assert evs and evs[-1][0] != "finish" and not closed, evs
        assert c.req("GET", "/v1/deployments/instances/h")[1]["status"] == 1

    @check("auto-rollback: failed finish endOfStream false, rollback, finish endOfStream true")
    def _():
        c.ctl("POST", "/reset")
        inst = c.ctl("POST", "/instances", {"name": "rb", "knobs": dict(FAST, fail=True),
                                            "autoRollback": True})
        evs, closed = c.stream("/v1/deployments/instances/rb/stream")
        types = [e[0] for e in evs]
        finishes = [e[2] for e in evs if e[0] == "finish"]
        assert [f["endOfStream"] for f in finishes] == [False, True], finishes
        assert [f["status"] for f in finishes] == [3, 6]
        assert "preRollbackState" in types and closed
        i = types.index("preRollbackState")
        assert types[i - 2:i] == ["finish", "instanceUpdate"], types
        assert evs[i - 1][2]["status"] == 4
        assert any(e[0] == "resource" and e[2]["status"] == 3 and e[2]["failureReasons"]
                   for e in evs)
        assert c.req("GET", "/v1/deployments/instances/rb")[1]["status"] == 6
        assert len(evs) == len(inst["_fake"]["events"])

    @check("POST/PATCH instances with changeSetId; GET; list paging; 404; 409 drift")
    def _():
        d = stage()["data"]
        st, js = c.req("POST", "/v1/deployments/instances",
                       {"instanceName": "prod", "changeSetId": d["id"]})
        assert st == 400, (st, js)   # not staged yet
        c.stream("/v1/deployments/changes/%s/stream" % d["id"])
        st, js = c.req("POST", "/v1/deployments/instances",
                       {"instanceName": "prod", "changeSetId": d["id"]})
        assert st == 202 and "lastEventId" not in js, (st, js)
        iid = js["data"]["instanceId"]
        evs, _ = c.stream("/v1/deployments/instances/%s/stream" % iid)
        assert evs[0][0] == "instanceUpdate" and evs[-1][2]["status"] == 2
        got = c.req("GET", "/v1/deployments/instances/prod")[1]
        assert got["status"] == 2 and got["lastDeployedTimestamp"] > 0, got
        st, js = c.req("PATCH", "/v1/deployments/instances/prod", {"changeSetId": d["id"]})
        assert st == 202 and js["lastEventId"] == evs[-1][1], js
        c.ctl("POST", "/instances", {"name": "other"})
        st, js = c.req("GET", "/v1/deployments/instances?offset=0&limit=1")
        assert js["totalCount"] == 2 and len(js["instances"]) == 1, js
        assert set(js["instances"][0]) == {"id", "name", "status", "lastDeployedTimestamp"}
        st, js = c.req("GET", "/v1/deployments/instances?search=oth")
        assert [i["name"] for i in js["instances"]] == ["other"]
        assert c.req("GET", "/v1/deployments/instances/nope")[0] == 404
        c.ctl("POST", "/knobs", {"deploy_drift": True})
        st, js = c.req("PATCH", "/v1/deployments/instances/prod", {"changeSetId": d["id"]})
        assert st == 409 and "drift" in js["message"], (st, js)

    @check("validation_diagnostics → 422; injected errors; unknown control knob → 400")
    def _():
        c.ctl("POST", "/reset")
        c.ctl("POST", "/knobs", {"validation_diagnostics": [{"level": 1, "message": "x"}]})
        st, js = c.req("POST", "/v1/deployments/changes", body)
        assert st == 422 and js["validationDiagnostics"][0]["message"] == "x", js
        c.ctl("POST", "/knobs", {"validation_diagnostics": None, "errors": [
            {"path": "/v1/deployments/instances", "status": 503, "times": 1}]})
        assert c.req("GET", "/v1/deployments/instances")[0] == 503
        assert c.req("GET", "/v1/deployments/instances")[0] == 200
        assert c.req("POST", "/_fake/knobs", {"nope": 1}, auth=None)[0] == 400

    return finish(proc, start)


if __name__ == "__main__":
    sys.exit(main())
