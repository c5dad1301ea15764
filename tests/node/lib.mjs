// Shared helpers for the Node interop tests: start the Showly fake and the real
// deploy-mcp binary (stdio or --listen), and poll the fake's control API.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TESTS_DIR = process.env.TESTS_DIR || path.dirname(HERE);
export const BIN =
  process.env.DEPLOY_MCP_BIN || path.join(path.dirname(TESTS_DIR), 'build', 'deploy-mcp');
export const PYTHON = process.env.PYTHON || 'python3';
export const SHOWLY_TOKEN = 'sk_live_node_interop_0123456789';

// Node 22 has a global WebSocket; Node 20 does not, so the SDK's
// WebSocketClientTransport gets the `ws` package's (same API).
export async function ensureWebSocket() {
  if (typeof globalThis.WebSocket === 'undefined') {
    const { WebSocket } = await import('ws');
    globalThis.WebSocket = WebSocket;
  }
}

// Resolves with the first stdout/stderr line matching re (its match), or
// rejects when the process exits first or the timeout passes. On timeout the
// process is killed: nobody will stop it, and a live child with our pipes
// open would keep the test process from ever exiting.
function waitLine(stream, proc, re, what, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: stream });
    const seen = [];
    const timer = setTimeout(() => {
      rl.close();
      proc.kill('SIGKILL');
      reject(new Error(`${what}: no line matching ${re} within ${timeoutMs} ms; got:\n${seen.join('\n')}`));
    }, timeoutMs);
    rl.on('line', (line) => {
      seen.push(line);
      const m = re.exec(line);
      if (m) {
        clearTimeout(timer);
        rl.removeAllListeners('line');
        rl.on('line', () => {}); // keep draining so the child never blocks on a full pipe
        resolve(m);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before it was ready:\n${seen.join('\n')}`));
    });
  });
}

export class ShowlyFake {
  static async start() {
    const f = new ShowlyFake();
    const script = path.join(TESTS_DIR, 'fakes', 'showly_fake.py');
    f.proc = spawn(PYTHON, ['-u', script, '--port', '0', '--token', SHOWLY_TOKEN, '--exit-on-stdin-eof'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const m = await waitLine(f.proc.stdout, f.proc, /^PORT (\d+)/, 'showly fake');
    f.url = `http://127.0.0.1:${m[1]}`;
    return f;
  }

  async call(method, p, body) {
    const r = await fetch(this.url + p, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`fake ${method} ${p}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  createDeployment(knobs = {}) {
    return this.call('POST', '/_fake/deployments', { siteId: 'site_node', knobs });
  }

  streams() {
    return this.call('GET', '/_fake/streams');
  }

  async stop() {
    if (this.proc.exitCode === null) {
      this.proc.stdin.end();
      await new Promise((r) => {
        const t = setTimeout(() => { this.proc.kill('SIGKILL'); r(); }, 3000);
        this.proc.once('exit', () => { clearTimeout(t); r(); });
      });
    }
  }
}

// A config file with one Showly target pointing at the fake, in a fresh dir.
export function writeConfig(fake) {
  const dir = mkdtempSync(path.join(tmpdir(), 'dmcp-node-'));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({
    targets: { web: { provider: 'showly', siteId: 'site_node', tokenEnv: 'SHOWLY_TOKEN', baseUrl: fake.url } },
  }));
  return { dir, file };
}

export function serverEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('DEPLOY_MCP_')) env[k] = v;
  return { ...env, SHOWLY_TOKEN, ...extra };
}

// What a sanitizer build prints when it finds a bug (ASan/UBSan/LSan).
export const SANITIZER_MARKERS = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:'];
const STDERR_CAP = 1 << 20; // bytes of a child's stderr kept (the newest)

// Keeps the newest STDERR_CAP bytes a child writes to stderr, so a sanitizer
// report (which comes last) survives however much was logged before it.
export function collectStderr(stream) {
  let chunks = [];
  let size = 0;
  let dropped = 0;
  stream.on('data', (b) => {
    if (typeof b === 'string') b = Buffer.from(b);
    chunks.push(b);
    size += b.length;
    if (size > 2 * STDERR_CAP) {
      const all = Buffer.concat(chunks);
      dropped += all.length - STDERR_CAP;
      chunks = [all.subarray(all.length - STDERR_CAP)];
      size = STDERR_CAP;
    }
  });
  return {
    text() {
      let all = Buffer.concat(chunks);
      let lost = dropped;
      if (all.length > STDERR_CAP) {
        lost += all.length - STDERR_CAP;
        all = all.subarray(all.length - STDERR_CAP);
      }
      return (lost ? `[... ${lost} earlier bytes of stderr dropped ...]\n` : '') + all.toString('utf8');
    },
  };
}

// Why an exit is abnormal (a string), or null when it was clean: exit 0, no
// signal, no sanitizer report.
export function abnormalExit(code, signal, stderrText) {
  if (signal) return `killed by ${signal}`;
  if (code !== 0) return `exit status ${code}`;
  const m = SANITIZER_MARKERS.find((s) => stderrText.includes(s));
  return m ? `exit status 0 but stderr has a sanitizer report ("${m}")` : null;
}

function reportAbnormal(what, why, stderrText) {
  process.stderr.write(`\n===== ${what} ended abnormally: ${why}; its stderr follows =====\n` +
                       `${stderrText}\n===== end of ${what} stderr =====\n`);
}

// deploy-mcp --listen 127.0.0.1:0; resolves once it logged its port.
// Its stderr is kept (the newest 1 MiB) and printed as soon as it exits
// abnormally (non-zero, by a signal, or with a sanitizer report), whoever
// stopped it; assertAlive() and stop() let tests fail on such an exit.
export async function startListener(configFile, { args = [], env = {} } = {}) {
  const proc = spawn(BIN, ['--listen', '127.0.0.1:0', '--config', configFile, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: serverEnv(env),
  });
  const stderr = collectStderr(proc.stderr);
  let exit = null; // {code, signal, why} once it exited
  // 'close' (not 'exit'): stderr has been read to its end by then.
  const closed = new Promise((resolve) => {
    proc.once('close', (code, signal) => {
      const why = abnormalExit(code, signal, stderr.text());
      exit = { code, signal, why };
      if (why) reportAbnormal('deploy-mcp --listen', why, stderr.text());
      resolve(exit);
    });
  });
  const m = await waitLine(proc.stderr, proc, /listening on http:\/\/127\.0\.0\.1:(\d+)\/mcp/, 'deploy-mcp --listen');
  const port = Number(m[1]);
  return {
    proc,
    port,
    httpUrl: new URL(`http://127.0.0.1:${port}/mcp`),
    wsUrl: new URL(`ws://127.0.0.1:${port}/mcp`),
    stderr: () => stderr.text(),
    // Throws (with the server's stderr) when the server is no longer running:
    // it must live until stop(). For afterEach hooks, so that a crash fails
    // the test it happened in even if that test's own assertions passed.
    assertAlive() {
      if (exit === null && proc.exitCode === null && proc.signalCode === null) return;
      const why = exit ? exit.why || `exit status ${exit.code}` :
        abnormalExit(proc.exitCode, proc.signalCode, stderr.text()) || `exit status ${proc.exitCode}`;
      throw new Error(`deploy-mcp --listen is no longer running (${why}); its stderr:\n${stderr.text()}`);
    },
    // SIGTERM, then the exit status: 0 for a clean shutdown; otherwise the
    // exit code, the signal's name, or 'sanitizer report' (a report on an
    // exit 0). Anything but 0 has already been printed with the stderr.
    async stop() {
      if (exit === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
        await closed;
        clearTimeout(t);
      }
      if (exit.signal) return exit.signal;
      if (exit.code !== 0) return exit.code;
      return exit.why ? 'sanitizer report' : 0;
    },
  };
}

export async function waitFor(pred, what, timeoutMs = 5000, stepMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
