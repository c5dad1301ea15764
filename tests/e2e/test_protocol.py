"""MCP core over stdio: lifecycle, version negotiation, JSON-RPC errors, batches,
tools/list pagination, bad input, shutdown — against the real binary."""

import json
import os
import subprocess
import time

from harness import BIN, Server, Suite, structured

suite = Suite("protocol")


def server(**kw):
    return Server(config=kw.pop("config", {"targets": {}}), **kw)


@suite.test
def initialize_negotiates_versions():
    for asked, want in [("2025-11-25", "2025-11-25"), ("2025-06-18", "2025-06-18"),
                        ("2025-03-26", "2025-03-26"), ("2024-11-05", "2024-11-05"),
                        ("1999-01-01", "2025-11-25")]:
        s = server()
        try:
            r = s.initialize(asked)
            assert r["protocolVersion"] == want, (asked, r)
            assert r["serverInfo"]["name"] == "deploy-mcp"
            assert "tools" in r["capabilities"] and "logging" in r["capabilities"]
        finally:
            s.close()


@suite.test
def requests_before_initialize_are_refused_but_ping_works():
    s = server()
    try:
        assert s.request("ping") == {"jsonrpc": "2.0", "id": 1, "result": {}}
        r = s.request("tools/list")
        assert r["error"]["code"] == -32600, r
        s.initialize()
        assert "result" in s.request("tools/list")
        r = s.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
        assert r["error"]["code"] == -32600, r
    finally:
        s.close()


@suite.test
def jsonrpc_error_codes():
    s = server()
    try:
        s.initialize()
        s.send_raw('{"jsonrpc":"2.0","id":5,"method":"ping"\n')
        s.send_raw("not json at all\n")
        s.send({"jsonrpc": "2.0", "id": 6, "method": "no/such/method"})
        s.send({"jsonrpc": "2.0", "id": None, "method": "ping"})
        s.send({"jsonrpc": "1.0", "id": 7, "method": "ping"})
        s.send({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "nope"}})
        s.send({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"arguments": {}}})
        s.send({"jsonrpc": "2.0", "id": 10, "method": "logging/setLevel", "params": {"level": "loud"}})
        s.send({"jsonrpc": "2.0", "id": 11, "result": {}})  # stray response: ignored
        s.send({"jsonrpc": "2.0", "id": 12, "method": "tools/list", "params": {"cursor": "bogus"}})
        assert s.wait_response(6)["error"]["code"] == -32601
        assert s.wait_response(7)["error"]["code"] == -32600
        r = s.wait_response(8)
        assert r["error"]["code"] == -32602 and "nope" in r["error"]["message"], r
        assert s.wait_response(9)["error"]["code"] == -32602
        assert s.wait_response(10)["error"]["code"] == -32602
        assert s.wait_response(12)["error"]["code"] == -32602
        nulls = [m for _, m in s.responses.get("null", [])]
        codes = sorted(m["error"]["code"] for m in nulls)
        assert codes == [-32700, -32700, -32600], codes
        assert "11" not in s.responses
        assert "result" in s.request("ping")
    finally:
        s.close()


@suite.test
def batches_depend_on_protocol_version():
    s = server()
    try:
        s.initialize("2025-06-18")
        s.send([{"jsonrpc": "2.0", "id": 50, "method": "ping"}])
        r = s.wait_response(None)
        assert r["error"]["code"] == -32600 and "batch" in r["error"]["message"], r
    finally:
        s.close()
    s = server()
    try:
        s.initialize("2025-03-26")
        s.send([{"jsonrpc": "2.0", "id": 60, "method": "ping"},
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": 61, "method": "tools/call",
                 "params": {"name": "list_targets", "arguments": {}}}])
        deadline = time.time() + 10
        while "batch" not in s.responses and time.time() < deadline:
            time.sleep(0.02)
        batch = s.responses["batch"][0][1]
        assert sorted(m["id"] for m in batch) == [60, 61], batch
    finally:
        s.close()


@suite.test
def tools_list_paginates_and_describes_every_tool():
    s = server(env={"DEPLOY_MCP_TOOLS_PAGE_SIZE": "3"})
    try:
        s.initialize()
        names, cursor, pages = [], None, 0
        while True:
            r = s.request("tools/list", {"cursor": cursor} if cursor else {})["result"]
            pages += 1
            for t in r["tools"]:
                names.append(t["name"])
                assert t["title"] and t["description"], t
                assert t["inputSchema"]["type"] == "object"
                assert t["inputSchema"].get("additionalProperties") is False, t["name"]
                assert t["outputSchema"]["type"] == "object"
                assert "readOnlyHint" in t["annotations"]
            cursor = r.get("nextCursor")
            if not cursor:
                break
        assert pages == 3, pages
        assert names == ["list_targets", "create_preview", "request_publish", "stream_events",
                         "tail_logs", "get_deployment", "list_deployments"], names
    finally:
        s.close()
    s = server()
    try:
        s.initialize()
        r = s.request("tools/list")["result"]
        assert len(r["tools"]) == 7 and "nextCursor" not in r
    finally:
        s.close()


@suite.test
def oversized_and_invalid_input_keeps_serving():
    s = server()
    try:
        s.initialize()
        s.send_raw(b'{"jsonrpc":"2.0","id":70,"method":"ping","x":"' + b"a" * (5 << 20) + b'"}\n')
        s.send_raw(b'{"jsonrpc":"2.0","id":71,"method":"ping","params":{"x":"\xff\xfe"}}\n')
        s.send_raw(b"[" * 100000 + b"\n")
        s.send_raw(b"\n\n   \n")
        r = s.request("ping")
        assert "result" in r
        errs = sorted(m["error"]["code"] for _, m in s.responses.get("null", []))
        assert errs == [-32700, -32700, -32600], errs
        assert "71" not in s.responses  # invalid UTF-8 is a parse error
        for line in s.stdout_bytes().splitlines():
            json.loads(line)  # stdout holds nothing but JSON messages
    finally:
        s.close()


@suite.test
def list_targets_without_config_explains_setup():
    s = Server(config=None)
    try:
        s.initialize()
        r = s.call("list_targets")
        sc = structured(r)
        assert sc["targets"] == []
        text = r["content"][0]["text"] + json.dumps(sc)
        assert "deploy-mcp.json" in text and "SHOWLY_TOKEN" in text, text
    finally:
        s.close()


@suite.test
def exits_promptly_on_stdin_eof():
    s = server()
    try:
        s.initialize()
        t0 = time.monotonic()
        s.close_stdin()
        assert s.wait_exit(2) == 0
        assert time.monotonic() - t0 < 2
    finally:
        s.close()


@suite.test
def last_responses_are_flushed_at_eof():
    s = server()
    try:
        s.initialize()
        # Many small answers queued when stdin ends must all be written.
        s.send_raw("".join(json.dumps({"jsonrpc": "2.0", "id": 1000 + i, "method": "ping"}) + "\n"
                           for i in range(500)))
        s.close_stdin()
        assert s.wait_exit(5) == 0
        s.reader.join(2)
        assert all(json.dumps(1000 + i) in s.responses for i in range(500))
    finally:
        s.close()


@suite.test
def exits_cleanly_on_sigterm():
    s = server()
    try:
        s.initialize()
        s.proc.terminate()
        assert s.wait_exit(2) == 0
    finally:
        s.close()


@suite.test
def stdin_from_a_regular_file():
    cfgdir = Server(config={"targets": {}})
    try:
        path = os.path.join(cfgdir.tmp, "in.jsonl")
        with open(path, "w") as f:
            f.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                "params": {"protocolVersion": "2025-11-25", "capabilities": {}}}) + "\n")
            f.write(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"}) + "\n")
        with open(path, "rb") as fin:
            out = subprocess.run([BIN, "--config", os.path.join(cfgdir.tmp, "config.json")],
                                 stdin=fin, capture_output=True, timeout=5)
        assert out.returncode == 0, out.stderr
        ids = [json.loads(l)["id"] for l in out.stdout.splitlines()]
        assert ids == [1, 2], out.stdout
    finally:
        cfgdir.close()


@suite.test
def command_line():
    out = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=5)
    assert out.returncode == 0 and out.stdout.startswith("deploy-mcp "), out
    out = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=5)
    assert out.returncode == 0 and "--config" in out.stdout and "--check" in out.stdout
    out = subprocess.run([BIN, "--bogus"], capture_output=True, text=True, timeout=5)
    assert out.returncode != 0 and "--bogus" in out.stderr
    out = subprocess.run([BIN, "--config", "/nonexistent/x.json"], capture_output=True,
                         text=True, timeout=5)
    assert out.returncode == 1 and "/nonexistent/x.json" in out.stderr, out.stderr


if __name__ == "__main__":
    suite.run()
