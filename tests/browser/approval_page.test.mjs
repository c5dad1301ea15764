// The approval page in a real headless browser. Starts the fake Bluelink
// engine and the real deploy-mcp binary (stdio), stages a change set through
// MCP, asks for a production publish, then opens the approval page in Debian's
// chromium (driven by playwright-core): the request's details render, a person
// types a name and the approver secret and clicks Approve, the result page
// says approved, and the fake engine receives the production deployment.
// Screenshots of both pages land in BROWSER_ARTIFACTS_DIR (the build dir under
// ctest) and are checked to be real, non-blank PNGs.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TESTS_DIR = process.env.TESTS_DIR || path.dirname(HERE);
const BIN = process.env.DEPLOY_MCP_BIN || path.join(path.dirname(TESTS_DIR), 'build', 'deploy-mcp');
const PYTHON = process.env.PYTHON || 'python3';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.BROWSER_ARTIFACTS_DIR || path.join(tmpdir(), 'deploy-mcp-browser');
const API_KEY = 'bl_browser_APIKEY_0123456789';
const SECRET = 'approver-browser-SECRET-5e1d0c';
const NOTES = 'Release 8: orders API <script>alert(1)</script>';

// ---- processes ----------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startFake() {
  const proc = spawn(PYTHON, ['-u', path.join(TESTS_DIR, 'fakes', 'bluelink_fake.py'), '--port', '0',
    '--api-key', API_KEY, '--exit-on-stdin-eof'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: proc.stdout });
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the fake did not start')), 10000);
    rl.once('line', (line) => {
      clearTimeout(timer);
      const m = /^PORT (\d+)/.exec(line);
      m ? resolve(Number(m[1])) : reject(new Error(`fake said ${line}`));
    });
    proc.once('exit', (code) => reject(new Error(`fake exited ${code}`)));
  });
  rl.on('line', () => {});
  const url = `http://127.0.0.1:${port}`;
  const call = async (method, p, body) => {
    const r = await fetch(url + p, {
      method, headers: { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return r.json();
  };
  return { proc, url, call };
}

// deploy-mcp over stdio with a minimal JSON-RPC client.
function startServer(config, env) {
  const dir = mkdtempSync(path.join(tmpdir(), 'dmcp-browser-'));
  const cfgPath = path.join(dir, 'config.json');
  writeFileSync(cfgPath, JSON.stringify(config));
  const cleanEnv = Object.fromEntries(Object.entries(process.env)
    .filter(([k]) => !k.startsWith('DEPLOY_MCP_')));
  const proc = spawn(BIN, ['--config', cfgPath], {
    cwd: dir, stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...cleanEnv, XDG_STATE_HOME: path.join(dir, 'state'),
      XDG_CONFIG_HOME: path.join(dir, 'xdg'), ...env },
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const pending = new Map();
  let nextId = 1;
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    const msg = JSON.parse(line);
    if (msg.id !== undefined && !msg.method && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    }
  });
  const send = (m) => proc.stdin.write(JSON.stringify(m) + '\n');
  const request = (method, params) => new Promise((resolve, reject) => {
    const id = nextId++;
    const timer = setTimeout(() => reject(new Error(`no answer to ${method}; stderr: ${stderr}`)), 60000);
    pending.set(id, (m) => { clearTimeout(timer); resolve(m); });
    send({ jsonrpc: '2.0', id, method, params });
  });
  const callTool = async (name, args) => {
    const r = await request('tools/call', { name, arguments: args });
    assert.ok(r.result, JSON.stringify(r));
    assert.ok(!r.result.isError, JSON.stringify(r.result));
    return r.result.structuredContent;
  };
  const close = () => new Promise((resolve) => {
    if (proc.exitCode !== null) return resolve(proc.exitCode);
    proc.once('exit', (code) => resolve(code));
    proc.stdin.end();
  });
  return { proc, dir, request, send, callTool, close, stderr: () => stderr };
}

// ---- PNG checks (node:zlib only) ----------------------------------------------

// Decodes an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium writes) into
// {width, height, channels, pixels}.
function decodePng(buf) {
  assert.ok(buf.subarray(0, 8).equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10])), 'PNG signature');
  let off = 8;
  let ihdr = null;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      ihdr = { width: data.readUInt32BE(0), height: data.readUInt32BE(4), depth: data[8],
        color: data[9], interlace: data[12] };
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      break;
    }
    off += 12 + len;
  }
  assert.ok(ihdr, 'IHDR chunk');
  assert.equal(ihdr.depth, 8, 'bit depth');
  assert.equal(ihdr.interlace, 0, 'interlace');
  const channels = { 2: 3, 6: 4 }[ihdr.color];
  assert.ok(channels, `colour type ${ihdr.color}`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = ihdr.width * channels;
  const pixels = Buffer.alloc(stride * ihdr.height);
  for (let y = 0; y < ihdr.height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = pixels.subarray(y * stride, (y + 1) * stride);
    const prev = y ? pixels.subarray((y - 1) * stride, y * stride) : Buffer.alloc(stride);
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? out[x - channels] : 0;
      const b = prev[x];
      const c = x >= channels ? prev[x - channels] : 0;
      let v = line[x];
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else assert.equal(filter, 0, `PNG filter ${filter}`);
      out[x] = v & 255;
    }
  }
  return { width: ihdr.width, height: ihdr.height, channels, pixels };
}

// A screenshot of a rendered page: a real PNG of the viewport, several KB,
// with visible content (luminance spread, many colours, ink on the page).
function checkScreenshot(buf, file, viewport) {
  assert.ok(buf.length > 5000, `${file}: only ${buf.length} bytes`);
  const img = decodePng(buf);
  assert.equal(img.width, viewport.width, 'screenshot width');
  assert.equal(img.height, viewport.height, 'screenshot height');
  let sum = 0, sum2 = 0, ink = 0;
  const colours = new Set();
  const n = img.width * img.height;
  for (let i = 0; i < n; i++) {
    const o = i * img.channels;
    const r = img.pixels[o], g = img.pixels[o + 1], b = img.pixels[o + 2];
    const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    sum += lum;
    sum2 += lum * lum;
    if (lum < 200) ink++;
    if (colours.size < 5000) colours.add((r << 16) | (g << 8) | b);
  }
  const mean = sum / n;
  const sd = Math.sqrt(Math.max(0, sum2 / n - mean * mean));
  assert.ok(sd > 10, `${file}: nearly uniform (luminance sd ${sd.toFixed(1)})`);
  assert.ok(colours.size > 50, `${file}: only ${colours.size} colours`);
  assert.ok(ink / n > 0.005 && ink / n < 0.9, `${file}: ink ratio ${(ink / n).toFixed(4)}`);
  return { ...img, sd, colours: colours.size, ink: ink / n };
}

async function waitFor(what, fn, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---- the test -------------------------------------------------------------------

test('approval page: details render, a person approves in Chromium, the publish happens', async (t) => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const fake = await startFake();
  t.after(() => fake.proc.stdin.end());
  await fake.call('POST', '/_fake/knobs', { default_knobs: { event_delay_ms: 20 } });
  const pagePort = await freePort();
  const server = startServer({
    targets: { infra: { provider: 'bluelink', baseUrl: fake.url, instanceName: 'prod-stack',
      directory: 'infra', auth: { type: 'apiKey', keyEnv: 'BL_KEY' } } },
    approval: { listen: `127.0.0.1:${pagePort}` },
  }, { BL_KEY: API_KEY, DEPLOY_MCP_APPROVER_SECRET: SECRET });
  t.after(() => rmSync(server.dir, { recursive: true, force: true }));
  t.after(() => server.close());

  const init = await server.request('initialize', { protocolVersion: '2025-11-25',
    capabilities: {}, clientInfo: { name: 'browser-test', version: '1' } });
  assert.ok(init.result, JSON.stringify(init));
  server.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  const staged = (await server.callTool('create_preview', { wait: true, maxSeconds: 30 })).deployment;
  assert.equal(staged.status, 'ready');
  const req = (await server.callTool('request_publish', { sourceDeploymentId: staged.id,
    notes: NOTES })).request;
  assert.equal(req.status, 'pending_approval');
  assert.equal(req.webApprovalUrl, `http://127.0.0.1:${pagePort}/approvals/${req.id}`);

  const profile = mkdtempSync(path.join(tmpdir(), 'dmcp-chromium-'));
  t.after(() => rmSync(profile, { recursive: true, force: true }));
  const viewport = { width: 1000, height: 900 };
  // launchPersistentContext is how playwright takes a --user-data-dir: a fresh
  // profile for every run.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(() => context.close());
  const page = context.pages()[0] || await context.newPage();
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });

  const resp = await page.goto(req.webApprovalUrl);
  assert.equal(resp.status(), 200);
  assert.equal(await page.title(), 'Approve production publish');
  assert.equal(await page.textContent('#status'), 'pending_approval');
  const plan = await page.textContent('#plan');
  assert.match(plan, new RegExp(`^apply change set ${staged.id.slice('changeset:'.length)} ` +
    'to instance prod-stack: 2 to create, 1 to update, 1 to remove'));
  const rows = Object.fromEntries(await page.$$eval('table tr', (trs) =>
    trs.map((tr) => [tr.querySelector('th').textContent, tr.querySelector('td').textContent])));
  assert.equal(rows.Target, 'infra');
  assert.equal(rows.Platform, 'bluelink');
  assert.equal(rows['Source deployment'], staged.id);
  assert.equal(rows.Request, req.id);
  assert.equal(rows["Agent's notes"], NOTES);             // shown as text, never run
  assert.match(rows['Staged changes'], /2 to create \(ordersTable, ordersApi\)/);
  assert.match(rows.Changes, /create resource ordersTable/);
  assert.match(rows.Changes, /remove resource legacyQueue/);
  assert.ok(!(await page.content()).includes(SECRET));
  const pendingFile = path.join(ARTIFACTS, 'approval-pending.png');
  checkScreenshot(await page.screenshot({ path: pendingFile }), pendingFile, viewport);

  await page.fill('#name', 'Dana (browser)');
  await page.fill('#secret', SECRET);
  await page.fill('#note', 'looks good');
  await Promise.all([page.waitForURL(req.webApprovalUrl, { waitUntil: 'load' }),
    page.waitForResponse((r) => r.request().method() === 'POST'), page.click('#approve')]);
  const status = await page.textContent('#status');
  assert.ok(['approved', 'publishing', 'published'].includes(status), status);
  assert.match(await page.textContent('body'), /Approved\. deploy-mcp is publishing now/);
  assert.equal(await page.$('#approve'), null, 'no second decision on the result page');
  const refresh = await page.getAttribute('#refresh', 'href');
  assert.equal(new URL(refresh, page.url()).href, req.webApprovalUrl);
  const doneFile = path.join(ARTIFACTS, 'approval-approved.png');
  const shot = checkScreenshot(await page.screenshot({ path: doneFile }), doneFile, viewport);
  console.log(`screenshots: ${pendingFile}, ${doneFile} (${shot.width}x${shot.height}, ` +
    `${shot.colours} colours, luminance sd ${shot.sd.toFixed(1)})`);
  assert.deepEqual(dialogs, [], 'the agent notes ran script');

  // the production deployment reached the engine, with the staged change set
  const posts = await waitFor('the production deployment', async () => {
    const reqs = await fake.call('GET', '/_fake/requests');
    const p = reqs.filter((r) => r.method === 'POST' && r.path === '/v1/deployments/instances');
    return p.length ? p : null;
  });
  assert.equal(posts.length, 1);
  assert.equal(posts[0].body.changeSetId, staged.id.slice('changeset:'.length));
  assert.equal(posts[0].body.instanceName, 'prod-stack');

  // Reloading the result page would post the form again: that replay is refused.
  const replay = await page.reload();
  assert.equal(replay.status(), 409);
  assert.match(await page.textContent('body'), /already decided/);
  // The result page's link (a GET) shows the outcome and the audit facts.
  await page.goto(req.webApprovalUrl);   // where the result page's link leads
  await waitFor('published', async () => {
    if ((await page.textContent('#status')) === 'published') return true;
    await page.goto(req.webApprovalUrl);
    return false;
  });
  assert.equal((await fake.call('GET', '/_fake/requests')).filter((r) =>
    r.path === '/v1/deployments/instances').length, 1, 'published once');
  const after = await page.textContent('body');
  assert.match(after, /Decided byDana \(browser\)/);
  assert.match(after, /Decided from127\.0\.0\.1/);
  const got = (await server.callTool('get_deployment', { deploymentId: req.id })).deployment;
  assert.equal(got.environment, 'production');
  assert.equal(got.request.status, 'published');

  assert.equal(await server.close(), 0);
  assert.ok(!server.stderr().includes(SECRET), 'the approver secret reached stderr');
});
