import type { Testcontainers } from "./docker.js";
import { freePort, tcpExchange } from "./ports.js";
import {
  containerHandle,
  provide,
  type LocalLaunch,
  type Provided,
  type ServiceHandle,
} from "./provide.js";

export function provideRedis(): Promise<Provided> {
  return provide({
    name: "Redis",
    envVar: "CITYWATCH_TEST_REDIS_URL",
    urlProtocols: ["redis:"],
    installHint: "install redis-server (apt-get install -y redis-server)",
    startContainer,
    executable: "redis-server",
    prepareLocal,
  });
}

// Tests want a throwaway in-memory server: no RDB snapshots, no append-only file.
const EPHEMERAL = ["--save", "", "--appendonly", "no"];

async function startContainer({ GenericContainer, Wait }: Testcontainers): Promise<ServiceHandle> {
  const container = await new GenericContainer("redis:7-alpine")
    .withCommand(["redis-server", ...EPHEMERAL])
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage("Ready to accept connections"))
    .withStartupTimeout(60_000)
    .start();
  return containerHandle(
    container,
    `redis://${container.getHost()}:${container.getMappedPort(6379)}`,
  );
}

async function prepareLocal(dir: string): Promise<LocalLaunch> {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  return {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      ...EPHEMERAL,
      "--dir",
      dir,
      "--daemonize",
      "no",
    ],
    url,
    readiness: {
      logMarker: /Ready to accept connections/,
      probe: async () => (await redisCommands(url, [["PING"]]))[0] === "PONG",
    },
  };
}

export type RespValue = string | number | null;

/**
 * Sends commands over one RESP connection and returns one reply per command. Honours the
 * password and database number of a redis:// URL. Replies are limited to what simple commands
 * return (status, integer, bulk string); an error reply rejects.
 */
export async function redisCommands(
  url: string,
  commands: readonly (readonly string[])[],
  timeoutMs = 2_000,
): Promise<RespValue[]> {
  const parsed = new URL(url);
  if (parsed.protocol !== "redis:") throw new Error(`expected a redis:// URL, got ${url}`);
  const preamble: string[][] = [];
  if (parsed.password !== "") {
    const user = decodeURIComponent(parsed.username);
    preamble.push(["AUTH", ...(user === "" ? [] : [user]), decodeURIComponent(parsed.password)]);
  }
  const db = parsed.pathname.replace(/^\//, "");
  if (db !== "") preamble.push(["SELECT", db]);

  const all = [...preamble, ...commands];
  const request = Buffer.concat(all.map(encodeCommand));
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = parsed.port === "" ? 6379 : Number(parsed.port);
  const reply = await tcpExchange(
    host,
    port,
    request,
    (received) => parseReplies(received, all.length) !== undefined,
    timeoutMs,
  );
  const values = parseReplies(reply, all.length) ?? [];
  const results: RespValue[] = [];
  for (const value of values) {
    if (value instanceof Error) throw value;
    results.push(value);
  }
  return results.slice(preamble.length);
}

function encodeCommand(args: readonly string[]): Buffer {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = Buffer.from(arg, "utf8");
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

/**
 * `count` replies, or undefined while more bytes are needed. Never throws: it runs inside a
 * socket data handler, so anything unparseable ends the list as an Error.
 */
function parseReplies(buffer: Buffer, count: number): (RespValue | Error)[] | undefined {
  const values: (RespValue | Error)[] = [];
  let offset = 0;
  while (values.length < count) {
    const lineEnd = buffer.indexOf("\r\n", offset);
    if (lineEnd < 0) return undefined;
    const type = String.fromCharCode(buffer[offset] ?? 0);
    const line = buffer.toString("utf8", offset + 1, lineEnd);
    offset = lineEnd + 2;
    switch (type) {
      case "+":
        values.push(line);
        break;
      case "-":
        values.push(new Error(`Redis replied: ${line}`));
        break;
      case ":":
        values.push(Number(line));
        break;
      case "$": {
        const length = Number(line);
        if (length < 0) {
          values.push(null);
          break;
        }
        if (buffer.length < offset + length + 2) return undefined;
        values.push(buffer.toString("utf8", offset, offset + length));
        offset += length + 2;
        break;
      }
      default:
        values.push(new Error(`unsupported RESP reply type ${JSON.stringify(type)}`));
        return values;
    }
  }
  return values;
}
