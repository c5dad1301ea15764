#!/usr/bin/env python3
"""Benchmark driver: deploy-mcp against a reference MCP server written with the
official TypeScript SDK (bench/reference), through the same scenarios, against
the same fast fake upstream (bench/upstream.c). Python 3 standard library only.

    python3 bench/run.py [--runs 3] [--smoke] [--only start,relay,...]
                         [--bin build/deploy-mcp] [--json out.json]

Prints the machine, then one markdown table: each figure is the median over
--runs runs, for both servers, and how many times better deploy-mcp is.

Benchmarks are not tests: nothing here asserts a timing. The exit status is 1
only when deploy-mcp fails functionally (a scenario errors out, or a relayed
line is lost or duplicated); the reference failing only prints a warning.

How figures are taken (see bench/README.md for the details):
- the driver reads the servers' stdout in large non-blocking reads and counts
  notifications with bytes.count(); it parses JSON only for responses, and
  checks exactly-once delivery of every line after the clock has stopped;
- RSS from /proc/<pid>/status (VmHWM = peak, VmRSS = now), CPU from
  /proc/<pid>/stat (utime + stime, all threads)."""

import argparse
import base64
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REF_DIR = os.path.join(HERE, "reference")
TOKEN = "sk_live_bench_0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")
READ_SIZE = 1 << 20
NOTE = b'"method":"notifications/'
PROGRESS = b'"method":"notifications/progress"'
MESSAGE = b'"method":"notifications/message"'
RESP_ID = re.compile(rb'"id":"(rq-[^"]*)"')
MARKER = re.compile(rb"#(\d+):(\d+)#")

now = time.perf_counter
DEBUG = bool(os.environ.get("BENCH_DEBUG"))


class BenchError(Exception):
    pass


# ---- /proc ------------------------------------------------------------------

def proc_mem(pid, anon=False):
    """(VmHWM, VmRSS) in kB; with anon, (VmHWM, VmRSS, RssAnon)."""
    hwm = rss = ra = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"RssAnon:"):
                    ra = int(line.split()[1])
    except OSError:
        pass
    return (hwm, rss, ra) if anon else (hwm, rss)


def proc_cpu(pid):
    """utime + stime of the whole process (every thread), in seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


# ---- the output scanner -------------------------------------------------------

class Scanner:
    """Consumes a server's output, one complete line (message) at a time,
    with bytes operations only: counts notifications, spots responses by the
    "rq-…" ids the driver gives its requests, and optionally keeps the bytes
    for verification after the clock stops."""

    def __init__(self):
        self.rem = b""
        self.progress = 0
        self.messages = 0
        self.lines = 0
        self.keep = None            # list of segments when verifying
        self.want = {}              # request id (bytes) -> send time
        self.got = {}               # request id (bytes) -> (receive time, line or None)
        self.keep_responses = set() # ids whose response line is kept
        self.count_only = False     # pipelined pings: count response lines only
        self.responses = 0
        self.calls_done = 0         # responses to "rq-c…" ids (concurrent relays)
        self.first_progress = 0     # progress notifications with progress 1 (a stream's first)

    def feed(self, data, t):
        if self.rem:
            data = self.rem + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self.rem = data
            return
        self.rem = data[cut + 1:]
        seg = data[:cut + 1] if cut + 1 < len(data) else data
        self.segment(seg, t)

    def segment(self, seg, t):
        n = seg.count(b"\n")
        notes = seg.count(NOTE)
        self.lines += n
        if notes:
            p = seg.count(PROGRESS)
            if p:
                self.progress += p
                self.first_progress += seg.count(b'"progress":1,') + seg.count(b'"progress":1.0,')
            self.messages += seg.count(MESSAGE)
        if self.keep is not None:
            self.keep.append(seg)
        if n > notes:
            self.responses += n - notes
            if self.count_only:
                return
            for line in seg.split(b"\n"):
                if not line or NOTE in line:
                    continue
                m = RESP_ID.search(line)
                if not m:
                    continue
                rid = m.group(1)
                if rid in self.want:
                    self.want.pop(rid)
                    self.got[rid] = (t, line if rid in self.keep_responses else None)
                    if rid.startswith(b"rq-c"):
                        self.calls_done += 1


# ---- connections to a server ----------------------------------------------------

class StdioConn:
    """A server child over stdio, non-blocking both ways."""

    def __init__(self, argv, env, stderr_path):
        self.stderr = open(stderr_path, "wb")
        self.t_spawn = now()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=env, bufsize=0,
                                     close_fds=True)
        self.pid = self.proc.pid
        self.out = self.proc.stdout.fileno()
        self.inp = self.proc.stdin.fileno()
        os.set_blocking(self.out, False)
        os.set_blocking(self.inp, False)
        self.wbuf = bytearray()
        self.sc = Scanner()
        self.eof = False
        self.stderr_path = stderr_path

    def send(self, data):
        self.wbuf += data
        self._write()

    def _write(self):
        while self.wbuf:
            try:
                n = os.write(self.inp, self.wbuf)
            except BlockingIOError:
                return
            except BrokenPipeError:
                self.wbuf.clear()
                raise BenchError("the server closed its stdin (exited?)")
            del self.wbuf[:n]

    def pump(self, timeout):
        """Waits up to timeout for output, then reads everything available."""
        rl = [] if self.eof else [self.out]
        wl = [self.inp] if self.wbuf else []
        if not rl and not wl:
            time.sleep(timeout)
            return
        r, w, _ = select.select(rl, wl, [], max(0.0, timeout))
        if w:
            self._write()
        if r:
            while True:
                try:
                    data = os.read(self.out, READ_SIZE)
                except BlockingIOError:
                    break
                t = now()
                if not data:
                    self.eof = True
                    break
                self.sc.feed(data, t)
                if len(data) < READ_SIZE:
                    break

    def stderr_tail(self, n=1500):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(0.5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()


class WsConn:
    """An MCP session over WebSocket (RFC 6455 client, text frames; masking
    with a zero key, which is valid and spares XOR-ing in Python)."""

    def __init__(self, host, port, path="/mcp"):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Protocol: mcp\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BenchError("WebSocket handshake: connection closed")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise BenchError("WebSocket handshake refused: "
                             + head.split(b"\r\n")[0].decode("latin-1"))
        self.sock.setblocking(False)
        self.buf = bytearray(rest)
        self.frag = bytearray()
        self.wbuf = bytearray()
        self.sc = Scanner()
        self.eof = False

    def send(self, data):
        # one JSON-RPC message per line of `data`, one text frame each
        for msg in data.split(b"\n"):
            if not msg:
                continue
            n = len(msg)
            if n < 126:
                hdr = bytes([0x81, 0x80 | n])
            elif n < 65536:
                hdr = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
            else:
                hdr = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
            self.wbuf += hdr + b"\0\0\0\0" + msg
        self._write()

    def _write(self):
        while self.wbuf:
            try:
                n = self.sock.send(self.wbuf)
            except BlockingIOError:
                return
            del self.wbuf[:n]

    def _frames(self, t):
        buf = self.buf
        out = []
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            ln = b1 & 0x7F
            off = 2
            if ln == 126:
                if len(buf) < 4:
                    break
                ln = int.from_bytes(buf[2:4], "big")
                off = 4
            elif ln == 127:
                if len(buf) < 10:
                    break
                ln = int.from_bytes(buf[2:10], "big")
                off = 10
            if b1 & 0x80:
                off += 4  # a server never masks; tolerate it anyway (key ignored)
            if len(buf) < off + ln:
                break
            payload = bytes(buf[off:off + ln])
            del buf[:off + ln]
            op = b0 & 0x0F
            if op in (0, 1, 2):
                self.frag += payload
                if b0 & 0x80:
                    out.append(bytes(self.frag))
                    self.frag.clear()
            elif op == 8:
                self.eof = True
            elif op == 9:
                self.wbuf += bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload
                self._write()
        if out:
            self.sc.feed(b"\n".join(out) + b"\n", t)

    def pump(self, timeout):
        rl = [] if self.eof else [self.sock]
        wl = [self.sock] if self.wbuf else []
        if not rl and not wl:
            time.sleep(timeout)
            return
        r, w, _ = select.select(rl, wl, [], max(0.0, timeout))
        if w:
            self._write()
        if r:
            while True:
                try:
                    data = self.sock.recv(READ_SIZE)
                except BlockingIOError:
                    break
                except ConnectionError:
                    self.eof = True
                    break
                t = now()
                if not data:
                    self.eof = True
                    break
                self.buf += data
                if len(data) < READ_SIZE:
                    break
            self._frames(now())

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- MCP helpers -----------------------------------------------------------------

def rpc(rid, method, params=None):
    msg = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()


def note(method, params=None):
    msg = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()


INIT_PARAMS = {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "deploy-mcp-bench", "version": "1"}}


def wait_for(conn, rids, timeout, what):
    """Pumps until every id in rids has its response; returns {rid: (t, line)}."""
    deadline = now() + timeout
    rids = [r.encode() if isinstance(r, str) else r for r in rids]
    while any(r not in conn.sc.got for r in rids):
        left = deadline - now()
        if left <= 0:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        if conn.eof:
            raise BenchError(f"the server closed its output while waiting for {what}")
        conn.pump(min(left, 0.5))
    return {r: conn.sc.got.pop(r) for r in rids}


def request(conn, rid, method, params=None, timeout=30, keep=True):
    b = rid.encode()
    conn.sc.want[b] = now()
    if keep:
        conn.sc.keep_responses.add(b)
    conn.send(rpc(rid, method, params))
    t, line = wait_for(conn, [b], timeout, method)[b]
    return t, (json.loads(line) if line else None)


def handshake(conn, timeout=30):
    _, res = request(conn, "rq-init", "initialize", INIT_PARAMS, timeout)
    if not res or "result" not in res:
        raise BenchError(f"initialize failed: {res}")
    conn.send(note("notifications/initialized"))
    return res


# ---- servers ------------------------------------------------------------------------

class Server:
    def __init__(self, name, argv_fn, env, tmp, loopstat=None):
        self.name = name
        self.argv_fn = argv_fn
        self.env = env
        self.tmp = tmp
        self.n = 0
        self.loopstat = loopstat     # path of libloopstat.so, or None
        self.loopstat_out = None

    def spawn(self, extra=()):
        self.n += 1
        env = self.env
        if self.loopstat:
            self.loopstat_out = os.path.join(self.tmp, f"{self.name}-{self.n}.loop")
            env = dict(env, LD_PRELOAD=self.loopstat, LOOPSTAT_OUT=self.loopstat_out)
        return StdioConn(self.argv_fn(extra), env,
                         os.path.join(self.tmp, f"{self.name}-{self.n}.stderr"))


def loopstat_phase(path, phase):
    """The CPU summary of one phase of a loopstat file: {n, busy_us, p99_us, max_us}."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    cur = None
    for line in text.splitlines():
        if line.startswith("phase "):
            cur = int(line.split()[1])
        elif cur == phase and line.startswith("summary cpu "):
            return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[2:])}
    return None


def build_reference(quiet):
    """Makes bench/reference/dist/server.js (npm ci + tsc) when missing or stale."""
    dist = os.path.join(REF_DIR, "dist", "server.js")
    src = os.path.join(REF_DIR, "src", "server.ts")
    if os.path.exists(dist) and os.path.getmtime(dist) >= os.path.getmtime(src):
        return dist
    if not shutil.which("node") or not shutil.which("npm"):
        raise BenchError("node/npm not found")
    out = subprocess.DEVNULL if quiet else None
    if not os.path.isdir(os.path.join(REF_DIR, "node_modules", "@modelcontextprotocol")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=REF_DIR, check=True,
                       stdout=out, stderr=subprocess.STDOUT)
    subprocess.run(["npm", "run", "--silent", "build"], cwd=REF_DIR, check=True)
    return dist


def find_helper(bin_path, tmp, name, src):
    """A bench/ helper from the CMake build (-DDEPLOY_MCP_BENCH=ON), else
    compiled here with cc."""
    bdir = os.path.dirname(os.path.abspath(bin_path))
    src = os.path.join(HERE, src)
    cand = os.path.join(bdir, "bench", name)
    if os.path.exists(cand) and os.path.getmtime(cand) >= os.path.getmtime(src):
        return cand
    out = os.path.join(tmp, name)
    cc = os.environ.get("CC", "cc")
    if name.endswith(".so"):
        cmd = [cc, "-O2", "-shared", "-fPIC", "-o", out, src, "-ldl"]
    else:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libuv"], check=True,
                               capture_output=True, text=True).stdout.split()
        cmd = [cc, "-O2", "-std=c11", "-D_DEFAULT_SOURCE", "-o", out, src, *flags]
    subprocess.run(cmd, check=True)
    return out


class Upstream:
    def __init__(self, path):
        self.proc = subprocess.Popen([path, "--port", "0", "--token", TOKEN,
                                      "--exit-on-stdin-eof"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise BenchError(f"upstream did not start: {line!r}")
        self.port = int(line.split()[1])
        self.pid = self.proc.pid
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, method, path):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"Content-Length: (\d+)", head)
            if m and len(body) >= int(m.group(1)):
                break
        s.close()
        return json.loads(data.partition(b"\r\n\r\n")[2])

    def stats(self):
        return self.call("GET", "/_bench/stats")

    def reset(self):
        self.call("POST", "/_bench/reset")

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(3)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


# ---- scenarios ------------------------------------------------------------------------

def dep_id(n, lines=1, delay=0, tag=0, offset=0):
    return f"bench_n{n}_l{lines}_d{delay}_t{tag}" + (f"_o{offset}" if offset else "")


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def verify_lines(segments, expect):
    """Every expected (tag, seq) marker appears in notifications/message lines
    exactly once. expect: {tag: number of lines}. Returns (ok, detail)."""
    data = b"".join(segments)
    msgs = [ln for ln in data.split(b"\n") if MESSAGE in ln]
    found = MARKER.findall(b"\n".join(msgs))
    total = sum(expect.values())
    uniq = set(found)
    bad = [m for m in uniq if int(m[0]) not in expect or not 1 <= int(m[1]) <= expect[int(m[0])]]
    if len(found) == total and len(uniq) == total and not bad:
        return True, f"{total} lines exactly once"
    return False, (f"expected {total} lines once; got {len(found)} markers, {len(uniq)} "
                   f"distinct, {len(bad)} unexpected")


def sc_start(server, cfg, reps):
    """Spawn → initialize response, `reps` times; returns the median in ms."""
    times = []
    for _ in range(reps):
        c = server.spawn()
        try:
            c.sc.want[b"rq-init"] = now()
            c.send(rpc("rq-init", "initialize", INIT_PARAMS))
            t, _ = wait_for(c, [b"rq-init"], 60, "initialize")[b"rq-init"]
            times.append((t - c.t_spawn) * 1000)
        finally:
            c.close()
    return {"start_ms": statistics.median(times)}


def sc_idle_and_ping(server, cfg, n_ping, n_pipe):
    c = server.spawn()
    out = {}
    try:
        handshake(c)
        request(c, "rq-list", "tools/list", {}, keep=False)
        time.sleep(0.5)
        out["idle_hwm_kb"], out["idle_rss_kb"], out["idle_anon_kb"] = proc_mem(c.pid, True)
        # sequential pings
        rtts = []
        for i in range(n_ping):
            rid = f"rq-p{i}".encode()
            c.sc.want[rid] = t0 = now()
            c.send(rpc(rid.decode(), "ping"))
            t, _ = wait_for(c, [rid], 30, "ping")[rid]
            rtts.append((t - t0) * 1e6)
        out["ping_p50_us"] = pct(rtts, 50)
        out["ping_p99_us"] = pct(rtts, 99)
        # pipelined pings: all written at once, responses counted as lines
        c.sc.count_only = True
        base = c.sc.responses
        blob = b"".join(rpc(f"rq-q{i}", "ping") for i in range(n_pipe))
        t0 = now()
        c.send(blob)
        deadline = t0 + 120
        while c.sc.responses - base < n_pipe:
            if now() > deadline or c.eof:
                raise BenchError("pipelined pings: not all answered")
            c.pump(0.5)
        out["pipe_per_s"] = n_pipe / (now() - t0)
        c.sc.count_only = False
    finally:
        c.close()
    return out


def relay_once(c, pid, upstream, n_events, timeout):
    """One stream_events call of n_events one-line events on an initialized
    connection; figures for the server process `pid`."""
    c.sc.keep = []
    p0, m0 = c.sc.progress, c.sc.messages
    cpu0, ucpu0 = proc_cpu(pid), proc_cpu(upstream.pid)
    rid = b"rq-relay"
    c.sc.want[rid] = t0 = now()
    c.sc.keep_responses.add(rid)
    c.send(rpc("rq-relay", "tools/call", {
        "name": "stream_events", "arguments": {"deploymentId": dep_id(n_events, 1, 0, 0),
                                               "maxSeconds": 3600},
        "_meta": {"progressToken": "tk-relay"}}))
    t, line = wait_for(c, [rid], timeout, "the relay")[rid]
    elapsed = t - t0
    cpu = proc_cpu(pid) - cpu0
    ucpu = proc_cpu(upstream.pid) - ucpu0
    hwm, _ = proc_mem(pid)
    segs, c.sc.keep = c.sc.keep, None
    ok, detail = verify_lines(segs, {0: n_events})
    res = json.loads(line).get("result", {})
    sc = res.get("structuredContent") or {}
    if sc.get("logLineCount") != n_events or sc.get("eventCount") != n_events + 2 \
            or sc.get("status") != "ready":
        ok = False
        detail += (f"; result says status={sc.get('status')} eventCount={sc.get('eventCount')}"
                   f" logLineCount={sc.get('logLineCount')}")
    return {"relay_s": elapsed, "relay_eps": (n_events + 2) / elapsed, "relay_cpu_s": cpu,
            "relay_upstream_cpu_s": ucpu, "relay_hwm_kb": hwm,
            "relay_progress": c.sc.progress - p0, "relay_messages": c.sc.messages - m0,
            "relay_ok": ok, "relay_detail": detail}


def sc_relay(server, cfg, upstream, n_events, timeout):
    c = server.spawn()
    try:
        handshake(c)
        return relay_once(c, c.pid, upstream, n_events, timeout)
    finally:
        c.close()


def sc_concurrent(server, cfg, upstream, n, events, lines, delay, timeout, ping_every=0.005):
    """n concurrent stream_events calls over one session. Three phases: ramp-up
    (calls sent, until every stream has relayed its first event), steady (all
    n streams live, none finished) and wind-down. Pings go out every
    ping_every seconds, one at a time, throughout; memory is sampled every
    20 ms."""
    c = server.spawn()
    try:
        handshake(c)
        request(c, "rq-list", "tools/list", {}, keep=False)
        # one upstream request first, so that the baseline already holds what
        # any first request loads (HTTP/TLS libraries, modules)
        _, res = request(c, "rq-warm", "tools/call", {
            "name": "get_deployment", "arguments": {"deploymentId": dep_id(1)}})
        if not res or (res.get("result") or {}).get("isError") or "result" not in res:
            raise BenchError(f"get_deployment failed: {res}")
        time.sleep(0.3)
        _, base_rss = proc_mem(c.pid)
        upstream.reset()
        c.sc.keep = []
        p0, m0, f0 = c.sc.progress, c.sc.messages, c.sc.first_progress
        cpu0 = proc_cpu(c.pid)
        blob = []
        ids = []
        for i in range(n):
            rid = f"rq-c{i}"
            ids.append(rid.encode())
            c.sc.keep_responses.add(rid.encode())
            blob.append(rpc(rid, "tools/call", {
                "name": "stream_events",
                # independent builds: stream i ticks i/n of a period later than stream 0
                "arguments": {"deploymentId": dep_id(events, lines, delay, i, i * delay // n),
                              "maxSeconds": 600},
                "_meta": {"progressToken": f"tk{i}"}}))
        t0 = now()
        for rid in ids:
            c.sc.want[rid] = t0
        c.send(b"".join(blob))
        deadline = t0 + timeout
        rtts = {"ramp": [], "steady": [], "tail": []}
        ping = None
        k = 0
        next_ping = next_mem = now()
        max_rss = max_rss_steady = 0
        t_live = None
        marked = 0
        t_end_steady = None
        done0 = c.sc.calls_done
        while c.sc.calls_done - done0 < n:
            t = now()
            if t > deadline:
                raise BenchError(f"{c.sc.calls_done - done0}/{n} concurrent relays finished "
                                 f"within {timeout}s")
            if c.eof:
                raise BenchError("the server closed its output during the concurrent relays")
            if c.sc.calls_done > done0:
                phase = "tail"
                if marked == 1 and server.loopstat:
                    os.kill(c.pid, signal.SIGUSR2)
                    marked = 2
                    t_end_steady = t
            elif c.sc.first_progress - f0 >= n and not c.wbuf:
                phase = "steady"
                if t_live is None:
                    t_live = t
                    if server.loopstat:
                        os.kill(c.pid, signal.SIGUSR2)
                        marked = 1
            else:
                phase = "ramp"
            if ping is not None and ping[0] in c.sc.got:
                tr, _ = c.sc.got.pop(ping[0])
                # a ping counts for the phase it was sent and answered in
                ph = ping[2] if ping[2] == phase else "tail" if phase == "tail" else "ramp"
                rtts[ph].append((tr - ping[1]) * 1e6)
                if DEBUG:
                    print(f"ping at {ping[1] - t0:7.3f}s rtt {(tr - ping[1]) * 1e3:8.2f} ms "
                          f"{ping[2]}→{phase} done={c.sc.calls_done - done0}", file=sys.stderr)
                ping = None
            if ping is None and t >= next_ping and not c.wbuf:
                rid = f"rq-lp{k}".encode()
                k += 1
                c.sc.want[rid] = t
                c.send(rpc(rid.decode(), "ping"))
                ping = (rid, t, phase)
                next_ping = t + ping_every
            if t >= next_mem:
                _, rss = proc_mem(c.pid)
                max_rss = max(max_rss, rss)
                if phase == "steady":
                    max_rss_steady = max(max_rss_steady, rss)
                next_mem = t + 0.02
            c.pump(0.002)
        t_end = max(c.sc.got[r][0] for r in ids)
        elapsed = t_end - t0
        cpu = proc_cpu(c.pid) - cpu0
        hwm, _ = proc_mem(c.pid)
        st = upstream.stats()
        segs, c.sc.keep = c.sc.keep, None
        ok, detail = verify_lines(segs, {i: events * lines for i in range(n)})
        bad = 0
        for r in ids:
            line = c.sc.got[r][1]
            sc = (json.loads(line).get("result") or {}).get("structuredContent") or {}
            if sc.get("eventCount") != events + 2 or sc.get("status") != "ready":
                bad += 1
        if bad:
            ok = False
            detail += f"; {bad} results not ready with {events + 2} events"
        if st.get("maxOpen", 0) < n:
            detail += f"; upstream saw at most {st.get('maxOpen')} concurrent streams"
        allr = rtts["ramp"] + rtts["steady"] + rtts["tail"]
        loop = {}
        if server.loopstat and marked == 2:
            c.close()
            ph = loopstat_phase(server.loopstat_out, 1) or {}
            ph0 = loopstat_phase(server.loopstat_out, 0) or {}
            if ph:
                span = (t_end_steady - t_live) if t_end_steady else None
                loop = {"conc_loop_p99_us": ph.get("p99_us"), "conc_loop_max_us": ph.get("max_us"),
                        "conc_loop_busy": (ph["busy_us"] / 1e6 / span) if span else None,
                        "conc_ramp_loop_max_us": ph0.get("max_us")}
        return {**loop, "conc_s": elapsed, "conc_hwm_kb": hwm,
                "conc_live_s": (t_live - t0) if t_live else None,
                "conc_kb_per_stream": max(0, (max_rss_steady or max_rss) - base_rss) / n,
                "conc_cpu_s": cpu,
                "conc_ping_p50_us": pct(rtts["steady"], 50),
                "conc_ping_p99_us": pct(rtts["steady"], 99),
                "conc_ping_n": len(rtts["steady"]),
                "conc_ping_all_p99_us": pct(allr, 99),
                "conc_ping_all_max_us": max(allr) if allr else None,
                "conc_upstream_max_open": st.get("maxOpen"),
                "conc_progress": c.sc.progress - p0, "conc_messages": c.sc.messages - m0,
                "conc_ok": ok, "conc_detail": detail}
    finally:
        c.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def sc_ws_relay(server, cfg, upstream, n_events, timeout):
    """The relay over `deploy-mcp --listen` (WebSocket on /mcp); None when the
    build has no listener yet."""
    port = free_port()
    c = server.spawn(("--listen", f"127.0.0.1:{port}"))
    try:
        deadline = now() + 5
        while True:
            if c.proc.poll() is not None:
                return None, c.stderr_tail(300).strip()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if now() > deadline:
                    return None, "the listener did not accept connections within 5 s"
                time.sleep(0.02)
        ws = WsConn("127.0.0.1", port)
        try:
            handshake(ws)
            return relay_once(ws, c.pid, upstream, n_events, timeout), ""
        finally:
            ws.close()
    finally:
        c.close()


def floors(tmp, reps, n_ping):
    """What the machine and the driver cost by themselves: spawning /bin/true
    to its exit, and a ping round trip through `cat` (an echo, no server)."""
    spawn = []
    for _ in range(reps):
        t0 = now()
        subprocess.run(["true"])
        spawn.append((now() - t0) * 1000)
    c = StdioConn(["cat"], dict(os.environ), os.path.join(tmp, "cat.stderr"))
    rtts = []
    try:
        for i in range(n_ping):
            rid = f"rq-p{i}".encode()
            c.sc.want[rid] = t0 = now()
            c.send(rpc(rid.decode(), "ping"))
            t, _ = wait_for(c, [rid], 10, "echo")[rid]
            rtts.append((t - t0) * 1e6)
    finally:
        c.close()
    return {"spawn_ms": statistics.median(spawn), "echo_p50_us": pct(rtts, 50),
            "echo_p99_us": pct(rtts, 99)}


def sc_upstream_alone(upstream, n_events):
    """Drains one n-event stream with a raw socket (1 MiB reads)."""
    s = socket.create_connection(("127.0.0.1", upstream.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    cpu0 = proc_cpu(upstream.pid)
    t0 = now()
    s.sendall((f"GET /deployments/{dep_id(n_events)}/events HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n").encode())
    total = 0
    events = 0
    tail = b""
    while True:
        data = s.recv(READ_SIZE)
        if not data:
            break
        total += len(data)
        events += (tail + data).count(b"\nevent: ") - tail.count(b"\nevent: ")
        tail = data[-16:]
    dt = now() - t0
    s.close()
    return {"events": events + 1, "bytes": total, "seconds": dt,
            "eps": (events + 1) / dt, "mbps": total / dt / 1e6,
            "cpu_s": proc_cpu(upstream.pid) - cpu0}


# ---- reporting ---------------------------------------------------------------------------

def machine():
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.1f GiB" % (int(f.readline().split()[1]) / 1048576)
    except OSError:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "nproc": os.cpu_count(), "cpu": cpu,
            "memory": mem, "kernel": os.uname().release, "load": os.getloadavg(),
            "python": sys.version.split()[0], "node": sh("node", "--version"),
            "libuv": sh("pkg-config", "--modversion", "libuv"),
            "libcurl": sh("pkg-config", "--modversion", "libcurl"),
            "jansson": sh("pkg-config", "--modversion", "jansson")}


def ref_versions():
    out = {}
    for pkg in ("@modelcontextprotocol/sdk", "eventsource-parser", "zod"):
        try:
            with open(os.path.join(REF_DIR, "node_modules", pkg, "package.json")) as f:
                out[pkg] = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            out[pkg] = "?"
    return out


def fmt(v, kind):
    if v is None:
        return "n/a"
    if kind == "ms":
        return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"
    if kind == "us":
        if v >= 10000:
            return f"{v / 1000:,.0f} ms"
        if v >= 1000:
            return f"{v / 1000:.2f} ms"
        return f"{v:.0f} µs"
    if kind == "mb":
        return f"{v / 1024:.1f} MB"
    if kind == "kb":
        return f"{v:.1f} KB"
    if kind == "s":
        return f"{v:.2f} s"
    if kind == "cpu":
        return f"{v:.2f} s"
    if kind == "rate":
        return f"{v:,.0f}/s"
    if kind == "pct":
        return f"{v * 100:.0f}%"
    if kind == "int":
        return f"{v:,.0f}"
    return str(v)


# (key, label, unit, lower_is_better, target)
ROWS = [
    ("start_ms", "start → initialize response", "ms", True, "≥ 50×"),
    ("idle_hwm_kb", "idle peak RSS (VmHWM)", "mb", True, "≥ 10× (RSS ≤ 1/10)"),
    ("idle_rss_kb", "idle RSS (VmRSS)", "mb", True, ""),
    ("idle_anon_kb", "idle private memory (RssAnon)", "mb", True, ""),
    ("ping_p50_us", "ping round trip p50", "us", True, ""),
    ("ping_p99_us", "ping round trip p99", "us", True, ""),
    ("pipe_per_s", "pipelined pings", "rate", False, ""),
    ("relay_s", "relay {relay_n} events: end to end", "s", True, "≥ 10×"),
    ("relay_eps", "relay {relay_n}: events/s", "rate", False, "≥ 10×"),
    ("relay_cpu_s", "relay {relay_n}: server CPU", "cpu", True, ""),
    ("relay_hwm_kb", "relay {relay_n}: peak RSS", "mb", True, ""),
    ("relay_progress", "relay {relay_n}: progress notifications", "int", None, ""),
    ("relay_messages", "relay {relay_n}: log notifications", "int", None, ""),
    ("relay_ok", "relay {relay_n}: every line exactly once", "bool", None, "yes"),
    ("relay_upstream_cpu_s", "relay {relay_n}: upstream CPU", "cpu", None, ""),
]
for _n in ("c1", "c2"):
    ROWS += [
        (f"{_n}:conc_s", "{%s} concurrent relays: completion" % _n, "s", True, ""),
        (f"{_n}:conc_live_s", "{%s} concurrent: all streams live after" % _n, "s", True, ""),
        (f"{_n}:conc_hwm_kb", "{%s} concurrent: peak RSS" % _n, "mb", True, ""),
        (f"{_n}:conc_kb_per_stream", "{%s} concurrent: memory per live stream" % _n, "kb",
         True, "≤ 32 KB" if _n == "c2" else ""),
        (f"{_n}:conc_cpu_s", "{%s} concurrent: server CPU" % _n, "cpu", True, ""),
        (f"{_n}:conc_ping_p50_us", "{%s} live streams: ping p50" % _n, "us", True, ""),
        (f"{_n}:conc_ping_p99_us", "{%s} live streams: ping p99" % _n, "us", True,
         "< 1 ms" if _n == "c2" else ""),
        (f"{_n}:conc_loop_p99_us", "{%s} live streams: loop iteration p99 (CPU)" % _n, "us",
         True, ""),
        (f"{_n}:conc_loop_max_us", "{%s} live streams: longest loop iteration (CPU)" % _n,
         "us", True, ""),
        (f"{_n}:conc_loop_busy", "{%s} live streams: loop busy (CPU share)" % _n, "pct", None,
         ""),
        (f"{_n}:conc_ramp_loop_max_us", "{%s} concurrent: longest iteration in ramp-up (CPU)" % _n,
         "us", True, ""),
        (f"{_n}:conc_ping_all_p99_us", "{%s} concurrent: ping p99 incl. ramp-up/wind-down" % _n,
         "us", True, ""),
        (f"{_n}:conc_ping_all_max_us", "{%s} concurrent: ping max incl. ramp-up/wind-down" % _n,
         "us", True, ""),
        (f"{_n}:conc_progress", "{%s} concurrent: progress notifications" % _n, "int", None, ""),
        (f"{_n}:conc_messages", "{%s} concurrent: log notifications" % _n, "int", None, ""),
        (f"{_n}:conc_ok", "{%s} concurrent: every line exactly once" % _n, "bool", None, "yes"),
    ]
ROWS += [
    ("ws:relay_eps", "WebSocket relay {relay_n}: events/s (ref: stdio)", "rate", False, ""),
    ("ws:relay_cpu_s", "WebSocket relay {relay_n}: server CPU (ref: stdio)", "cpu", True, ""),
    ("ws:relay_hwm_kb", "WebSocket relay {relay_n}: peak RSS (ref: stdio)", "mb", True, ""),
    ("ws:relay_messages", "WebSocket relay {relay_n}: log notifications", "int", None, ""),
    ("ws:relay_ok", "WebSocket relay {relay_n}: every line exactly once", "bool", None, "yes"),
]


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    if not vals:
        return None
    if isinstance(vals[0], bool):
        return all(vals)
    return statistics.median(vals)


def table(results, labels, judge=True):
    out = ["| scenario | deploy-mcp | reference (TS SDK) | deploy-mcp advantage | target | met |",
           "|---|---:|---:|---:|---|---|"]
    for key, label, unit, lower, target in ROWS:
        ours = median_of(results["ours"], key)
        ref_key = key
        if key.startswith("ws:"):
            ref_key = key[3:]  # the reference has no WebSocket transport: its stdio figure
        ref = median_of(results["ref"], ref_key)
        if ours is None and ref is None and not key.startswith("ws:"):
            continue
        lab = label.format(**labels)
        if unit == "bool":
            o = "n/a" if ours is None else ("yes" if ours else "**NO**")
            r = "n/a" if ref is None else ("yes" if ref else "no")
            met = "" if ours is None or not judge else ("✅" if ours else "❌")
            out.append(f"| {lab} | {o} | {r} | | {target} | {met} |")
            continue
        adv = ""
        if lower is not None and ours and ref:
            adv = ref / ours if lower else ours / ref
            advs = f"{adv:,.1f}×"
        else:
            advs = ""
        met = ""
        if target and ours is not None and judge:
            if target.startswith("≥") and adv:
                met = "✅" if adv >= float(target.split()[1].rstrip("×")) else "❌"
            elif target == "< 1 ms":
                met = "✅" if ours < 1000 else "❌"
            elif target == "≤ 32 KB":
                met = "✅" if ours <= 32 else "❌"
        out.append(f"| {lab} | {fmt(ours, unit)} | {fmt(ref, unit)} | {advs} | {target} | {met} |")
    return "\n".join(out)


# ---- main ------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("DEPLOY_MCP_BIN",
                                                    os.path.join(ROOT, "build", "deploy-mcp")))
    ap.add_argument("--upstream", help="bench upstream binary (default: from the build, "
                                       "else compiled with cc)")
    ap.add_argument("--runs", type=int, default=None, help="runs per scenario (default 3)")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds-long run with small sizes (CI); never judges timings")
    ap.add_argument("--only", default="",
                    help="comma list of: upstream,start,idle,relay,conc,ws (default: all)")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--relay-events", type=int, default=None)
    ap.add_argument("--conc", default=None, help="concurrency levels (default 100,1000)")
    ap.add_argument("--conc-shape", default="50,2,100",
                    help="events,lines per event,ms before each event (default 50,2,100)")
    ap.add_argument("--json", help="write every run's raw figures here")
    ap.add_argument("--loopstat", action="store_true",
                    help="LD_PRELOAD bench/loopstat.c into deploy-mcp: CPU time of each event-"
                         "loop iteration while N streams are live (figures independent of "
                         "other load on the machine)")
    ap.add_argument("--nice", type=int, default=0,
                    help="priority change for the driver, both servers and the upstream "
                         "(e.g. -10 as root on a shared machine; noted in the output)")
    ap.add_argument("--wrap", default="",
                    help="command prefix for deploy-mcp, for profiling, e.g. "
                         "\"perf record -g -o /tmp/perf.data --\" (figures then describe "
                         "the wrapper, not deploy-mcp)")
    args = ap.parse_args()

    smoke = args.smoke
    if args.nice:
        os.nice(args.nice)
    runs = args.runs or (1 if smoke else 3)
    relay_n = args.relay_events or (2000 if smoke else 100000)
    conc = [int(x) for x in (args.conc or ("10,50" if smoke else "100,1000")).split(",")]
    ev, ln, dl = (int(x) for x in args.conc_shape.split(","))
    if smoke and args.conc_shape == "50,2,100":
        ev, ln, dl = 5, 2, 20
    only = set(filter(None, args.only.split(","))) or \
        {"upstream", "start", "idle", "relay", "conc", "ws"}
    timeout = 60 if smoke else 300

    # Both servers and the upstream hold one descriptor per stream.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    need = max(conc) * 2 + 64
    if want < need:
        print(f"warning: RLIMIT_NOFILE {want} < {need}: the largest concurrent scenario may "
              "fail", file=sys.stderr)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    if not os.access(args.bin, os.X_OK):
        print(f"deploy-mcp binary not found at {args.bin}: build it first "
              "(cmake -S . -B build && cmake --build build -j) or pass --bin", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="dmcp-bench-")
    failures = []
    up = None
    try:
        upath = args.upstream or find_helper(args.bin, tmp, "bench-upstream", "upstream.c")
        up = Upstream(upath)
        cfg_path = os.path.join(tmp, "config.json")
        with open(cfg_path, "w") as f:
            json.dump({"targets": {"bench": {"provider": "showly", "siteId": "s",
                                             "baseUrl": up.url}}}, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_MCP_")}
        env.update({"SHOWLY_TOKEN": TOKEN, "XDG_CONFIG_HOME": os.path.join(tmp, "xdg"),
                    "XDG_STATE_HOME": os.path.join(tmp, "state")})
        bin_abs = os.path.abspath(args.bin)
        lpath = find_helper(args.bin, tmp, "libloopstat.so", "loopstat.c") \
            if args.loopstat else None
        servers = {"ours": Server("deploy-mcp",
                                  lambda extra: [*args.wrap.split(), bin_abs, "--config",
                                                 cfg_path, *extra],
                                  env, tmp, lpath)}
        ref_note = ""
        if not args.no_reference:
            try:
                dist = build_reference(quiet=smoke)
                servers["ref"] = Server("reference",
                                        lambda extra: ["node", dist, "--config", cfg_path],
                                        env, tmp)
            except (BenchError, OSError, subprocess.CalledProcessError) as e:
                ref_note = f"reference unavailable: {e}"
                print("warning: " + ref_note, file=sys.stderr)
        results = {"ours": [{} for _ in range(runs)], "ref": [{} for _ in range(runs)]}
        m = machine()
        notes = []

        def run(label, fn, who, i, critical=True):
            try:
                r = fn()
                results[who][i].update(r)
                for k, v in r.items():
                    if k.endswith("_ok") and v is False:
                        det = r.get(k[:-3] + "_detail", "")
                        (failures if who == "ours" and critical else notes).append(
                            f"{servers[who].name}: {label}: {det}")
            except (BenchError, OSError, ValueError) as e:
                msg = f"{servers[who].name}: {label}: {e}"
                (failures if who == "ours" and critical else notes).append(msg)
                print("error: " + msg, file=sys.stderr)

        print(f"# deploy-mcp benchmark{' (smoke)' if smoke else ''}", flush=True)
        upstream_fig = None
        if "upstream" in only:
            upstream_fig = sc_upstream_alone(up, 20000 if smoke else 1000000)
            print(f"upstream alone: {upstream_fig['events']:,} events in "
                  f"{upstream_fig['seconds']:.2f} s = {upstream_fig['eps']:,.0f} events/s, "
                  f"{upstream_fig['mbps']:.0f} MB/s", file=sys.stderr, flush=True)
        floor = None
        if "start" in only or "idle" in only:
            floor = floors(tmp, 3 if smoke else 20, 100 if smoke else 2000)
        order = [w for w in ("ours", "ref") if w in servers]
        for i in range(runs):
            for who in order:
                s = servers[who]
                if "start" in only:
                    run("start", lambda: sc_start(s, cfg_path, 3 if smoke else 10), who, i)
                if "idle" in only:
                    run("idle/ping", lambda: sc_idle_and_ping(
                        s, cfg_path, 100 if smoke else 2000, 1000 if smoke else 20000), who, i)
                if "relay" in only:
                    run("relay", lambda: sc_relay(s, cfg_path, up, relay_n, timeout), who, i)
                if "conc" in only:
                    for tag, n in zip(("c1", "c2"), conc):
                        def one():
                            rr = sc_concurrent(s, cfg_path, up, n, ev, ln, dl, timeout)
                            return {f"{tag}:{k}": v for k, v in rr.items()}
                        run(f"{n} concurrent relays", one, who, i)
                if "ws" in only and who == "ours":
                    def ws():
                        r, why = sc_ws_relay(s, cfg_path, up, relay_n, timeout)
                        if r is None:
                            results["ours"][i]["ws_na"] = why
                            return {}
                        return {f"ws:{k}": v for k, v in r.items()}
                    # the listener has its own tests: a failure here is reported, not fatal
                    run("WebSocket relay", ws, who, i, critical=False)
                print(f"run {i + 1}/{runs} {s.name}: done", file=sys.stderr, flush=True)
        m["load_end"] = os.getloadavg()

        labels = {"relay_n": f"{relay_n:,}", "c1": f"{conc[0]:,}",
                  "c2": f"{conc[1]:,}" if len(conc) > 1 else "-"}
        print()
        print(f"- date: {m['date']}; {m['nproc']} cores ({m['cpu']}), {m['memory']}, "
              f"Linux {m['kernel']}; load average {m['load'][0]:.2f} at start, "
              f"{m['load_end'][0]:.2f} at end")
        print(f"- deploy-mcp {bin_abs} (libuv {m['libuv']}, libcurl {m['libcurl']}, "
              f"jansson {m['jansson']}); reference: Node {m['node']}, "
              + ", ".join(f"{k} {v}" for k, v in ref_versions().items()))
        print(f"- medians of {runs} run(s); concurrent relays: {ev} events × {ln} lines, "
              f"{dl} ms before each event; Python {m['python']} driver"
              + (f"; everything ran at nice {args.nice}" if args.nice else ""))
        if upstream_fig:
            print(f"- upstream alone (raw socket drain): {upstream_fig['events']:,} events in "
                  f"{upstream_fig['seconds']:.3f} s = **{upstream_fig['eps']:,.0f} events/s** "
                  f"({upstream_fig['mbps']:.0f} MB/s, upstream CPU "
                  f"{upstream_fig['cpu_s']:.2f} s)")
        if floor:
            print(f"- floors of this machine and driver: spawning /bin/true to its exit "
                  f"{floor['spawn_ms']:.1f} ms; a ping echoed by `cat` (no server) "
                  f"p50 {floor['echo_p50_us']:.0f} µs, p99 {floor['echo_p99_us']:.0f} µs")
        ws_na = [r.get("ws_na") for r in results["ours"] if r.get("ws_na")]
        if ws_na:
            print(f"- WebSocket: n/a — `deploy-mcp --listen` is not available in this build "
                  f"({ws_na[0].splitlines()[-1] if ws_na[0] else 'no listener'})")
        mo = [r.get("c2:conc_upstream_max_open") or r.get("c1:conc_upstream_max_open")
              for r in results["ours"]]
        if any(mo):
            print(f"- upstream concurrent SSE connections at peak (deploy-mcp, largest level): "
                  f"{max(x for x in mo if x)}")
        if ref_note:
            print(f"- {ref_note}")
        print()
        if smoke:
            print("(smoke: small sizes, one run; the target column is not judged)\n")
        print(table(results, labels, judge=not smoke))
        for n in notes + failures:
            print(f"\n- {n}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": m, "results": results, "upstream": upstream_fig,
                           "floors": floor}, f,
                          indent=1)
    finally:
        if up:
            up.close()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"\nbench: {len(failures)} deploy-mcp failure(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
