"""Backpressure: a client that stops reading stdout while the upstream pours
log lines. The server's memory must stay bounded (it pauses the upstream
transfer instead of queueing without limit), and once the client reads
again every line arrives exactly once."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from harness import BIN, TOKEN, Fake, Suite

suite = Suite("backpressure")
fake = None
LINES = 600_000


def rss_kb(pid):
    """The process's private memory (RssAnon): what queueing would grow.
    Not VmRSS, which also counts shared-library pages (libcurl and its ~30
    dependencies are mapped on the first upstream request)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def is_asan_build():
    out = subprocess.run(["ldd", BIN], capture_output=True, text=True).stdout
    return "libasan" in out


@suite.test
def slow_client_bounded_memory_and_nothing_lost():
    fake.call("POST", "/_fake/reset", {})
    dep = fake.call("POST", "/_fake/deployments",
                    {"siteId": "s", "knobs": {"burst_lines": LINES, "burst_events": 3000}})
    tmp = tempfile.mkdtemp(prefix="dmcp-bp-")
    cfg = os.path.join(tmp, "config.json")
    with open(cfg, "w") as f:
        json.dump({"targets": {"web": {"provider": "showly", "siteId": "s",
                                       "baseUrl": fake.url}}}, f)
    env = dict(os.environ, SHOWLY_TOKEN=TOKEN, XDG_STATE_HOME=os.path.join(tmp, "state"))
    p = subprocess.Popen([BIN, "--config", cfg, "--log-level", "debug"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=open(os.path.join(tmp, "stderr.log"), "wb"), env=env)
    try:
        def send(m):
            p.stdin.write((json.dumps(m) + "\n").encode())
            p.stdin.flush()

        send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {}}})
        json.loads(p.stdout.readline())
        base = rss_kb(p.pid)
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "stream_events", "arguments": {"deploymentId": dep["id"]}}})
        # Do not read: the pipe fills, the server queues up to its high-water
        # mark and must then pause the upstream.
        peak = base
        for _ in range(30):
            time.sleep(0.1)
            peak = max(peak, rss_kb(p.pid))
        time.sleep(1.5)
        peak = max(peak, rss_kb(p.pid))
        streams = fake.call("GET", "/_fake/streams")
        sent_while_blocked = sum(c.get("events_sent", 0) for c in streams.get("openStreams", []))
        growth_mb = (peak - base) / 1024
        print(f"  rss base {base // 1024} MB, peak while not reading {peak // 1024} MB, "
              f"growth {growth_mb:.1f} MB", flush=True)
        if not is_asan_build():  # ASan's quarantine holds freed memory: RSS says little
            # ~15 MB of notifications are pending upstream; without backpressure they
            # would all be queued in the server.
            assert growth_mb < 12, f"memory grew {growth_mb:.1f} MB while the client was not reading"
        # Now read everything: every line exactly once, then the result.
        seen = 0
        expect = 1
        result = None
        deadline = time.time() + 240
        for raw in p.stdout:
            m = json.loads(raw)
            if m.get("method") == "notifications/message":
                for line in m["params"]["data"]["lines"]:
                    assert line == f"burst line {expect}/{LINES}", (line, expect)
                    expect += 1
                    seen += 1
            elif m.get("id") == 2:
                result = m["result"]
                break
            assert time.time() < deadline, "too slow"
        assert result is not None, (seen, p.wait(5), open(os.path.join(tmp, "stderr.log")).read()[-3000:])
        sc = result["structuredContent"]
        assert seen == LINES and sc["logLineCount"] == LINES, (seen, sc["logLineCount"])
        assert sc["status"] == "ready", sc
        send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
        assert json.loads(p.stdout.readline())["id"] == 3
    finally:
        p.stdin.close()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
        p.stdout.close()
    assert p.returncode == 0


@suite.test
def websocket_client_that_stops_reading():
    # Same over WebSocket: the server must pause the upstream rather than
    # queue (or drop the client), and deliver everything once it reads.
    from test_listener import WS, Listener
    fake.call("POST", "/_fake/reset", {})
    dep = fake.call("POST", "/_fake/deployments",
                    {"siteId": "s", "knobs": {"burst_lines": LINES, "burst_events": 3000}})
    srv = Listener(config={"targets": {"web": {"provider": "showly", "siteId": "s",
                                               "baseUrl": fake.url}}})
    ws = None
    try:
        ws = WS(srv)
        assert ws.status == 101, ws.head
        ws.send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                 "params": {"protocolVersion": "2025-11-25", "capabilities": {}}})
        assert ws.recv()["id"] == 1
        base = rss_kb(srv.proc.pid)
        ws.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                 "params": {"name": "stream_events", "arguments": {"deploymentId": dep["id"]}}})
        peak = base
        for _ in range(45):
            time.sleep(0.1)
            peak = max(peak, rss_kb(srv.proc.pid))
        growth_mb = (peak - base) / 1024
        print(f"  websocket: rss base {base // 1024} MB, peak while not reading "
              f"{peak // 1024} MB, growth {growth_mb:.1f} MB", flush=True)
        if not is_asan_build():
            assert growth_mb < 12, f"memory grew {growth_mb:.1f} MB while the client was not reading"
        expect, result = 1, None
        while result is None:
            m = ws.recv()
            if m.get("method") == "notifications/message":
                for line in m["params"]["data"]["lines"]:
                    assert line == f"burst line {expect}/{LINES}", (line, expect)
                    expect += 1
            elif m.get("id") == 2:
                result = m["result"]
        assert expect - 1 == LINES and result["structuredContent"]["logLineCount"] == LINES
        assert "not reading" not in srv.stderr(), "the client was dropped instead of paused"
    finally:
        if ws:
            ws.close()
        assert srv.stop() == 0


if __name__ == "__main__":
    fake = Fake("showly")
    try:
        suite.run()
    finally:
        fake.close()
