// Reference server for the deploy-mcp benchmark: the stream_events and
// get_deployment tools of deploy-mcp, written the way a TypeScript developer
// would with the official MCP SDK — McpServer + StdioServerTransport, zod
// schemas, fetch streaming parsed by eventsource-parser, and one progress
// notification per upstream event (log lines as notifications/message).
//
//   node dist/server.js [--config FILE]
//
// Config: the same file as deploy-mcp ({"targets": {name: {provider:
// "showly", siteId, baseUrl?, tokenEnv?}}, "defaultTarget"?}); the token comes
// from the environment variable tokenEnv (default SHOWLY_TOKEN).
import { readFileSync } from "node:fs";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { EventSourceParserStream } from "eventsource-parser/stream";
import { z } from "zod";

interface TargetConfig {
  provider: string;
  siteId: string;
  baseUrl?: string;
  tokenEnv?: string;
}

interface Config {
  targets: Record<string, TargetConfig>;
  defaultTarget?: string;
}

interface ShowlyDeployment {
  id: string;
  siteId: string;
  environment: "preview" | "production";
  status: string;
  createdAt?: string;
  previewUrl?: string;
  url?: string;
  error?: { code: string; message: string };
}

const TERMINAL = new Set(["ready", "failed", "canceled"]);
const LAST_LINES = 50;
const MAX_RECONNECTS = 5;

function loadConfig(): Config {
  const i = process.argv.indexOf("--config");
  const path = i >= 0 ? process.argv[i + 1] : process.env.DEPLOY_MCP_CONFIG ?? "deploy-mcp.json";
  return JSON.parse(readFileSync(path, "utf8")) as Config;
}

const config = loadConfig();

function resolveTarget(name?: string): { name: string; base: string; token: string } {
  const names = Object.keys(config.targets);
  const chosen = name ?? config.defaultTarget ?? (names.length === 1 ? names[0] : undefined);
  if (!chosen || !config.targets[chosen]) {
    throw new Error(`unknown target ${chosen ?? "(none)"}; configured: ${names.join(", ")}`);
  }
  const t = config.targets[chosen];
  const token = process.env[t.tokenEnv ?? "SHOWLY_TOKEN"];
  if (!token) throw new Error(`environment variable ${t.tokenEnv ?? "SHOWLY_TOKEN"} is not set`);
  return { name: chosen, base: (t.baseUrl ?? "https://api.showly.ai").replace(/\/$/, ""), token };
}

function toDeployment(target: string, d: ShowlyDeployment) {
  return {
    id: d.id,
    target,
    provider: "showly",
    environment: d.environment,
    status: d.status,
    providerStatus: d.status,
    ...(d.previewUrl || d.url ? { url: d.previewUrl ?? d.url } : {}),
    ...(d.createdAt ? { createdAt: d.createdAt } : {}),
    ...(d.error ? { error: d.error } : {}),
  };
}

function errorResult(message: string): CallToolResult {
  return { isError: true, content: [{ type: "text", text: message }] };
}

const server = new McpServer(
  { name: "deploy-mcp-reference", version: "0.1.0" },
  { capabilities: { logging: {} } },
);

const deploymentShape = {
  id: z.string(),
  target: z.string(),
  provider: z.string(),
  environment: z.string(),
  status: z.string(),
  providerStatus: z.string(),
  url: z.string().optional(),
  createdAt: z.string().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
};

server.registerTool(
  "get_deployment",
  {
    title: "Get a deployment",
    description: "Look up one deployment by id.",
    inputSchema: { deploymentId: z.string().min(1), target: z.string().optional() },
    outputSchema: { deployment: z.object(deploymentShape) },
    annotations: { readOnlyHint: true, openWorldHint: true },
  },
  async ({ deploymentId, target }, extra): Promise<CallToolResult> => {
    try {
      const t = resolveTarget(target);
      const res = await fetch(`${t.base}/deployments/${encodeURIComponent(deploymentId)}`, {
        headers: { Authorization: `Bearer ${t.token}`, Accept: "application/json" },
        signal: extra.signal,
      });
      const body = (await res.json()) as { ok: boolean; data?: ShowlyDeployment; error?: { message: string } };
      if (!res.ok || !body.ok || !body.data) {
        return errorResult(`Showly answered HTTP ${res.status}: ${body.error?.message ?? "no details"}`);
      }
      const out = { deployment: toDeployment(t.name, body.data) };
      return { content: [{ type: "text", text: JSON.stringify(out) }], structuredContent: out };
    } catch (e) {
      return errorResult(`get_deployment failed: ${(e as Error).message}`);
    }
  },
);

server.registerTool(
  "stream_events",
  {
    title: "Follow a deployment live",
    description:
      "Follow a deployment's build live until it reaches a terminal status or maxSeconds pass. " +
      "Each event is relayed as notifications/progress (with a progressToken) and build log " +
      "lines as notifications/message; the result summarizes the stream.",
    inputSchema: {
      deploymentId: z.string().min(1),
      cursor: z.string().optional(),
      maxSeconds: z.number().int().min(1).max(3600).default(300),
      includeLogs: z.boolean().default(true),
      target: z.string().optional(),
    },
    outputSchema: {
      deploymentId: z.string(),
      status: z.string(),
      terminal: z.boolean(),
      url: z.string().optional(),
      eventCount: z.number(),
      logLineCount: z.number(),
      lastLines: z.array(z.string()),
      cursor: z.string(),
      durationMs: z.number(),
    },
    annotations: { readOnlyHint: true, idempotentHint: true, openWorldHint: true },
  },
  async ({ deploymentId, cursor, maxSeconds, includeLogs, target }, extra): Promise<CallToolResult> => {
    const started = Date.now();
    let t: ReturnType<typeof resolveTarget>;
    try {
      t = resolveTarget(target);
    } catch (e) {
      return errorResult((e as Error).message);
    }
    const progressToken = extra._meta?.progressToken;
    const logger = `deploy-mcp/${t.name}`;
    let lastEventId = cursor ? Buffer.from(cursor, "base64url").toString() : "";
    let status = "queued";
    let url: string | undefined;
    let eventCount = 0;
    let logLineCount = 0;
    const lastLines: string[] = [];
    let terminal = false;
    const deadline = AbortSignal.timeout(maxSeconds * 1000);
    const signal = AbortSignal.any([extra.signal, deadline]);

    const progress = async (message: string) => {
      if (progressToken === undefined) return;
      await extra.sendNotification({
        method: "notifications/progress",
        params: { progressToken, progress: eventCount, message },
      });
    };

    try {
      for (let attempt = 0; !terminal && attempt <= MAX_RECONNECTS; attempt++) {
        const headers: Record<string, string> = {
          Authorization: `Bearer ${t.token}`,
          Accept: "text/event-stream",
        };
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        const res = await fetch(`${t.base}/deployments/${encodeURIComponent(deploymentId)}/events`, {
          headers,
          signal,
        });
        if (!res.ok || !res.body) {
          return errorResult(`Showly answered HTTP ${res.status} for the event stream`);
        }
        const events = res.body
          .pipeThrough(new TextDecoderStream())
          .pipeThrough(new EventSourceParserStream());
        for await (const ev of events) {
          if (ev.id) lastEventId = ev.id;
          if (ev.event === "status") {
            const data = JSON.parse(ev.data) as { status: string; previewUrl?: string };
            eventCount++;
            status = data.status;
            if (data.previewUrl) url = data.previewUrl;
            await progress(url && status === "ready" ? `${status} · ${url}` : status);
            if (TERMINAL.has(status)) {
              terminal = true;
              break;
            }
          } else if (ev.event === "log") {
            const data = JSON.parse(ev.data) as { lines: string[]; level?: string };
            eventCount++;
            logLineCount += data.lines.length;
            if (!includeLogs) continue;
            for (const line of data.lines) {
              lastLines.push(line);
              if (lastLines.length > LAST_LINES) lastLines.shift();
            }
            await server.sendLoggingMessage({
              level: "info",
              logger,
              data: { deploymentId, lines: data.lines },
            });
            await progress(`log · ${data.lines.length} line${data.lines.length === 1 ? "" : "s"}`);
          }
        }
      }
    } catch (e) {
      if (!deadline.aborted) {
        return errorResult(`the event stream failed: ${(e as Error).message}`);
      }
    }
    const out = {
      deploymentId,
      status,
      terminal,
      ...(url ? { url } : {}),
      eventCount,
      logLineCount,
      lastLines,
      cursor: Buffer.from(lastEventId).toString("base64url"),
      durationMs: Date.now() - started,
    };
    return { content: [{ type: "text", text: JSON.stringify(out) }], structuredContent: out };
  },
);

await server.connect(new StdioServerTransport());
