// Runs the official MCP conformance suite (@modelcontextprotocol/conformance,
// pinned in package-lock.json) against `deploy-mcp --listen 127.0.0.1:0
// --conformance-fixtures`: the active server suite for protocol 2025-11-25
// with conformance-expected-failures.yml, then the applicable scenarios the
// active suite leaves out. Exits non-zero on any unexpected failure, on a
// stale expected failure, or when the server does not shut down cleanly.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startListener } from './lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SPEC = '2025-11-25';
const EXTRA_SCENARIOS = ['json-schema-2020-12', 'server-sse-polling'];
// The suite's CLI needs Node >= 22; the `node` npm package pins one.
const NODE22 = path.join(HERE, 'node_modules', 'node', 'bin', 'node');
const CLI = path.join(HERE, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');

function run(args) {
  return new Promise((resolve) => {
    const p = spawn(existsSync(NODE22) ? NODE22 : process.execPath, [CLI, ...args], { stdio: 'inherit' });
    p.on('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1)));
  });
}

const dir = mkdtempSync(path.join(tmpdir(), 'dmcp-conformance-'));
const config = path.join(dir, 'config.json');
writeFileSync(config, JSON.stringify({ targets: {} }));
const server = await startListener(config, { args: ['--conformance-fixtures'] });
const url = server.httpUrl.href;
let failed = 0;
try {
  const out = path.join(dir, 'results');
  if (await run(['server', '--url', url, '--spec-version', SPEC, '--expected-failures',
                 path.join(HERE, 'conformance-expected-failures.yml'), '-o', out]) !== 0) {
    console.error('conformance: the active server suite had unexpected results');
    failed++;
  }
  for (const s of EXTRA_SCENARIOS) {
    if (await run(['server', '--url', url, '--scenario', s, '-o', out]) !== 0) {
      console.error(`conformance: scenario ${s} failed`);
      failed++;
    }
  }
} finally {
  const code = await server.stop();
  if (code !== 0) {
    console.error(`conformance: deploy-mcp exited with ${code} on SIGTERM (want 0)`);
    failed++;
  }
}
console.log(`conformance: ${failed ? 'FAILED' : 'all applicable scenarios passed'}`);
process.exit(failed ? 1 : 0);
