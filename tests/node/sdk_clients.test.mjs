// The official MCP TypeScript SDK client drives the real deploy-mcp binary over
// each transport it offers: stdio (StdioClientTransport), WebSocket
// (WebSocketClientTransport) and Streamable HTTP (StreamableHTTPClientTransport).
// Against the Showly fake: initialize, tools/list, a streamed stream_events with
// progress and log notifications, and cancellation through an AbortSignal that
// must close the upstream event stream.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { WebSocketClientTransport } from '@modelcontextprotocol/sdk/client/websocket.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

import {
  BIN, ShowlyFake, abnormalExit, collectStderr, ensureWebSocket, serverEnv, startListener, waitFor,
  writeConfig,
} from './lib.mjs';

let fake;
let config;
let listener;

before(async () => {
  await ensureWebSocket();
  fake = await ShowlyFake.start();
  config = writeConfig(fake);
  listener = await startListener(config.file);
});

// A listener that died (a sanitizer abort, a crash) fails the test it died
// in, with its stderr, even when that test's own assertions passed.
afterEach(() => {
  if (listener) listener.assertAlive();
});

after(async () => {
  const code = listener ? await listener.stop() : 0;
  if (fake) await fake.stop();
  assert.equal(code, 0, `deploy-mcp --listen exits 0 on SIGTERM; its stderr:\n${listener?.stderr()}`);
});

const transports = {
  stdio: () => new StdioClientTransport({
    command: BIN,
    args: ['--config', config.file],
    env: serverEnv(),
    cwd: config.dir,
    stderr: 'pipe',
  }),
  websocket: () => new WebSocketClientTransport(listener.wsUrl),
  http: () => new StreamableHTTPClientTransport(listener.httpUrl),
};

async function connect(kind) {
  const client = new Client({ name: `node-interop-${kind}`, version: '1.0.0' });
  const transport = transports[kind]();
  // The stdio server is this client's child: keep its stderr and exit status
  // (the SDK's transport does not expose the latter; its _process does).
  const stderr = transport instanceof StdioClientTransport ? collectStderr(transport.stderr) : null;
  await client.connect(transport);
  let child = null;
  if (stderr) {
    const proc = transport._process;
    child = { exited: null };
    child.exited = proc ? new Promise((r) => proc.once('close', (code, sig) => r({ code, sig }))) :
      Promise.resolve(null);
  }
  const logs = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logs.push(n.params));
  return { client, transport, logs, stderr, child };
}

async function disconnect({ client, transport, stderr, child }) {
  if (transport instanceof StreamableHTTPClientTransport) await transport.terminateSession();
  await client.close();
  if (child) {
    // The SDK closes stdin, then SIGTERMs after 2 s: deploy-mcp exits 0 either way.
    const st = await Promise.race([child.exited, new Promise((r) => setTimeout(() => r('timeout'), 10000))]);
    assert.notEqual(st, 'timeout', 'the stdio server exits after the client closes');
    const why = st ? abnormalExit(st.code, st.sig, stderr.text()) :
      abnormalExit(0, null, stderr.text());
    assert.equal(why, null, `deploy-mcp (stdio) ended abnormally: ${why}; its stderr:\n${stderr.text()}`);
  }
}

for (const kind of Object.keys(transports)) {
  test(`${kind}: initialize and tools/list`, { timeout: 30000 }, async () => {
    const c = await connect(kind);
    try {
      assert.equal(c.client.getServerVersion().name, 'deploy-mcp');
      assert.ok(c.client.getServerCapabilities().tools);
      const { tools } = await c.client.listTools();
      const names = tools.map((t) => t.name);
      for (const n of ['list_targets', 'create_preview', 'stream_events', 'tail_logs'])
        assert.ok(names.includes(n), `${n} listed (got ${names})`);
      const targets = await c.client.callTool({ name: 'list_targets', arguments: {} });
      assert.equal(targets.structuredContent.targets[0].name, 'web');
      assert.deepEqual(await c.client.ping(), {});
    } finally {
      await disconnect(c);
    }
  });

  test(`${kind}: stream_events relays progress and logs live, then the result`, { timeout: 60000 }, async () => {
    const c = await connect(kind);
    // Created after connecting, with events 400 ms apart, so most are still to
    // come when the call starts even on a loaded machine.
    const dep = await fake.createDeployment({ slow_ms: 400 });
    try {
      const progress = [];
      const result = await c.client.callTool(
        { name: 'stream_events', arguments: { deploymentId: dep.id, maxSeconds: 30 } },
        undefined,
        { onprogress: (p) => progress.push({ ...p, at: Date.now() }), timeout: 45000 },
      );
      const sc = result.structuredContent;
      assert.ok(!result.isError, JSON.stringify(result));
      assert.equal(sc.status, 'ready');
      assert.equal(sc.terminal, true);
      assert.ok(sc.logLineCount >= 5, `log lines counted: ${sc.logLineCount}`);
      assert.ok(progress.length >= 2, `progress notifications: ${progress.length}`);
      for (let i = 1; i < progress.length; i++)
        assert.ok(progress[i].progress > progress[i - 1].progress, 'progress strictly increases');
      // The fake spreads its events over ~0.6 s: live relay means they did not all arrive at once.
      assert.ok(progress[progress.length - 1].at - progress[0].at >= 150, 'progress arrived over time');
      await waitFor(() => c.logs.length > 0, 'log notifications');
      assert.equal(c.logs[0].logger, 'deploy-mcp/web');
      assert.ok(c.logs.some((l) => (l.data.lines || []).some((s) => String(s).includes('Cloning repository'))));
    } finally {
      await disconnect(c);
    }
  });

  test(`${kind}: aborting a call cancels it and closes the upstream stream`, { timeout: 60000 }, async () => {
    const dep = await fake.createDeployment({ hang: true, keepalive_ms: 200 });
    const c = await connect(kind);
    try {
      const ac = new AbortController();
      let firstProgress;
      const gotProgress = new Promise((r) => { firstProgress = r; });
      const call = c.client.callTool(
        { name: 'stream_events', arguments: { deploymentId: dep.id, maxSeconds: 120 } },
        undefined,
        { onprogress: () => firstProgress(), signal: ac.signal, timeout: 60000 },
      );
      const rejected = assert.rejects(call, /abort|cancel/i);
      await gotProgress;
      const open = await fake.streams();
      assert.ok(open.openStreams.some((s) => s.deploymentId === dep.id), 'upstream stream open while the call runs');
      const t0 = Date.now() / 1000;
      ac.abort('test cancels');
      await rejected;
      const rec = await waitFor(async () => {
        const s = await fake.streams();
        return s.closed.find((x) => x.deploymentId === dep.id);
      }, 'the fake to see the stream closed', 5000);
      assert.equal(rec.reason, 'client_closed');
      assert.ok(rec.closedAt - t0 < 2, `closed ${(rec.closedAt - t0).toFixed(2)} s after the abort`);
      // The session survives the cancellation.
      assert.deepEqual(await c.client.ping(), {});
    } finally {
      await disconnect(c);
      await fake.call('POST', `/_fake/deployments/${dep.id}/finish`, { status: 'ready' });
    }
  });
}
