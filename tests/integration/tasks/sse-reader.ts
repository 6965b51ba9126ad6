import { get as httpGet, type IncomingMessage } from "node:http";
import { TaskEvent } from "../../../contracts/index.js";

/**
 * A live-stream reader: the answer's status, the task events it carried, and whether the server
 * ended the stream. Each reader has its own connection (no agent, no keep-alive pool: a pooled
 * socket of a server closed by an earlier test may sit on a port the next server reuses). For the
 * revocation and cap tests (tests/integration/tasks, tests/fault/readers).
 */
export interface SseReader {
  readonly status: number;
  readonly events: TaskEvent[];
  /** The error body when the stream was refused. */
  readonly body: string;
  ended(): boolean;
  close(): void;
}

/** GET `path` with a bearer token on a connection of its own; resolves at the response head. */
export function getOwn(base: string, path: string, token: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = httpGet(`${base}${path}`, {
      agent: false,
      headers: { authorization: `Bearer ${token}` },
    });
    req.once("response", resolve);
    req.once("error", reject);
  });
}

/** The whole body of an answer. */
export async function bodyOf(res: IncomingMessage): Promise<string> {
  let text = "";
  res.setEncoding("utf8");
  for await (const chunk of res) text += chunk as string;
  return text;
}

export async function openStream(base: string, token: string): Promise<SseReader> {
  const res = await getOwn(base, "/api/v1/tasks/stream", token);
  const status = res.statusCode ?? 0;
  const events: TaskEvent[] = [];
  if (status !== 200) {
    const body = await bodyOf(res);
    return { status, events, body, ended: () => true, close: () => undefined };
  }
  let ended = false;
  let pending = "";
  res.setEncoding("utf8");
  res.on("data", (chunk: string) => {
    const frames = (pending + chunk).split("\n\n");
    pending = frames.pop() ?? "";
    for (const frame of frames) {
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (data !== undefined) events.push(TaskEvent.parse(JSON.parse(data)));
    }
  });
  res.socket.once("close", () => (ended = true));
  return { status, events, body: "", ended: () => ended, close: () => res.destroy() };
}
