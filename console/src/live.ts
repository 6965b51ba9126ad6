import type { TaskEvent } from "../../contracts/model/tasks.js";

/*
 * The live task stream (GET /api/v1/tasks/stream, server-sent events `event: task`) through the
 * browser's EventSource: the session cookie authenticates it (same origin), and the browser
 * reconnects by itself with Last-Event-ID, so no event is lost across a short outage.
 */
export function subscribeTasks(
  onEvent: (event: TaskEvent) => void,
  onStatus: (live: boolean) => void,
): () => void {
  const source = new EventSource("/api/v1/tasks/stream", { withCredentials: true });
  source.addEventListener("open", () => onStatus(true));
  source.addEventListener("error", () => onStatus(false));
  source.addEventListener("task", (message) => {
    try {
      onEvent(JSON.parse((message as MessageEvent<string>).data) as TaskEvent);
    } catch {
      // Not an event of this version: ignored.
    }
  });
  return () => source.close();
}
