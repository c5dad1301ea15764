"""End-to-end harness: runs the real deploy-mcp binary over stdio against the
fake provider servers in tests/fakes/, speaking MCP as a client would.

Python 3 standard library only. Each test file builds a Suite of small test
functions and calls suite.run(), which prints one line per test and a final
"N passed, N failed" line and exits non-zero on any failure."""

import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS_DIR = os.environ.get("TESTS_DIR", os.path.dirname(HERE))
BIN = os.environ.get("DEPLOY_MCP_BIN", os.path.join(os.path.dirname(TESTS_DIR), "build", "deploy-mcp"))
TOKEN = "sk_live_e2e_SECRET_0123456789abcdef"
# DEPLOY_MCP_WRAPPER (e.g. "valgrind --error-exitcode=99 -q") is split and put
# in front of the binary's argv; waits then get E2E_TIME_SCALE (default 10
# under a wrapper, else 1) times longer.
WRAPPER = shlex.split(os.environ.get("DEPLOY_MCP_WRAPPER", ""))
TIME_SCALE = float(os.environ.get("E2E_TIME_SCALE", "10" if WRAPPER else "1"))


class Fake:
    """A fake provider server process (tests/fakes/<name>_fake.py)."""

    def __init__(self, name, token=TOKEN, extra_args=()):
        script = os.path.join(TESTS_DIR, "fakes", f"{name}_fake.py")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", script, "--port", "0", "--token", token, *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            raise RuntimeError(f"fake {name} did not start: {line!r} {err}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def requests(self):
        return self.call("GET", "/_fake/requests")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


class Server:
    """The deploy-mcp binary over stdio, with a reader thread that files
    every message: responses by id, notifications in arrival order (with the
    arrival time, to prove live relay)."""

    def __init__(self, config=None, env=None, args=(), cwd=None):
        self.tmp = tempfile.mkdtemp(prefix="dmcp-e2e-")
        self.cwd = cwd or self.tmp
        argv = [*WRAPPER, BIN, *args]
        if config is not None:
            path = os.path.join(self.tmp, "config.json")
            with open(path, "w") as f:
                json.dump(config, f)
            argv += ["--config", path]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_MCP_")}
        full_env["XDG_CONFIG_HOME"] = os.path.join(self.tmp, "xdg")
        full_env["XDG_STATE_HOME"] = os.path.join(self.tmp, "state")
        full_env.update(env or {})
        self.stderr_path = os.path.join(self.tmp, "stderr.log")
        self.stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr_file, cwd=self.cwd, env=full_env)
        self.raw_stdout = []          # every line, as bytes
        self.responses = {}
        self.notes = []               # (time, message)
        self.cond = threading.Condition()
        self.next_id = 1
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            now = time.monotonic()
            with self.cond:
                self.raw_stdout.append(line)
                try:
                    msg = json.loads(line)
                except ValueError:
                    msg = {"_unparsable": line}
                msgs = msg if isinstance(msg, list) else [msg]
                for m in msgs:
                    if isinstance(m, dict) and "id" in m and "method" not in m:
                        self.responses.setdefault(json.dumps(m["id"]), []).append((now, m))
                    else:
                        self.notes.append((now, m))
                if isinstance(msg, list):
                    self.responses.setdefault("batch", []).append((now, msg))
                self.cond.notify_all()

    # -- sending -----------------------------------------------------------
    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, msg):
        self.send_raw(json.dumps(msg) + "\n")

    def new_id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def request_async(self, method, params=None, progress=None, rid=None):
        rid = self.new_id() if rid is None else rid
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = dict(params)
        if progress is not None:
            msg.setdefault("params", {}).setdefault("_meta", {})["progressToken"] = progress
        self.send(msg)
        return rid

    def wait_response(self, rid, timeout=30):
        key = json.dumps(rid)
        timeout *= TIME_SCALE
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no response to id {rid} within {timeout}s; "
                                         f"stderr: {self.stderr()[-2000:]}")
                self.cond.wait(left)
            return self.responses[key][0][1]

    def request(self, method, params=None, timeout=30, **kw):
        return self.wait_response(self.request_async(method, params, **kw), timeout)

    def notify(self, method, params=None):
        msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def initialize(self, version="2025-11-25", capabilities=None):
        r = self.request("initialize", {"protocolVersion": version,
                                        "capabilities": capabilities or {},
                                        "clientInfo": {"name": "e2e", "version": "1"}})
        assert "result" in r, r
        self.notify("notifications/initialized")
        return r["result"]

    def call(self, name, args=None, timeout=60, progress=None):
        r = self.request("tools/call", {"name": name, "arguments": args or {}},
                         timeout=timeout, progress=progress)
        assert "result" in r, f"tools/call {name} gave a JSON-RPC error: {r}"
        return r["result"]

    def notes_where(self, method, token=None):
        with self.cond:
            out = []
            for t, m in self.notes:
                if m.get("method") != method:
                    continue
                if token is not None and m.get("params", {}).get("progressToken") != token:
                    continue
                out.append((t, m))
            return out

    def wait_notes(self, method, count, token=None, timeout=20):
        deadline = time.monotonic() + timeout * TIME_SCALE
        while True:
            got = self.notes_where(method, token)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(got)} {method} notifications, wanted {count}")
            time.sleep(0.02)

    def stdout_bytes(self):
        with self.cond:
            return b"".join(self.raw_stdout)

    def stderr(self):
        self.stderr_file.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def wait_exit(self, timeout=5):
        return self.proc.wait(timeout * TIME_SCALE)

    def close(self):
        if self.proc.poll() is None:
            self.close_stdin()
            try:
                self.proc.wait(5 * TIME_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(2)
        self.proc.stdout.close()
        self.stderr_file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def structured(result):
    """structuredContent of a tool result, checked against its text block."""
    sc = result.get("structuredContent")
    assert sc is not None, f"no structuredContent: {result}"
    texts = [c["text"] for c in result.get("content", []) if c.get("type") == "text"]
    assert texts, f"no text block: {result}"
    if not result.get("isError"):
        assert json.loads(texts[0]) == sc, "text block differs from structuredContent"
    return sc


class Suite:
    def __init__(self, name):
        self.name = name
        self.tests = []

    def test(self, fn):
        self.tests.append(fn)
        return fn

    def run(self):
        only = os.environ.get("E2E_ONLY")
        passed = failed = 0
        for fn in self.tests:
            if only and only not in fn.__name__:
                continue
            t0 = time.monotonic()
            try:
                fn()
                passed += 1
                print(f"ok   {self.name}.{fn.__name__} ({time.monotonic() - t0:.2f}s)", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {self.name}.{fn.__name__}", flush=True)
                traceback.print_exc()
        print(f"{passed} passed, {failed} failed", flush=True)
        sys.exit(1 if failed else 0)
