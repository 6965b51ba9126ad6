import type { TaskEvent } from "../../contracts/model/tasks.js";

/*
 * The live task stream (GET /api/v1/tasks/stream, server-sent events `event: task`) through the
 * browser's EventSource: the session cookie authenticates it (same origin), and the browser
 * reconnects by itself with Last-Event-ID, so no event is lost across a short outage.
 *
 * An answer other than 200 closes an EventSource for good: a 429 (the user holds the cap of live
 * streams, say while the server has not yet seen the stream of the page just left) or a 503 (the
 * server is full). The stream is then opened again after a wait (2 s doubling to 30 s, jittered),
 * and since a new source cannot resume from Last-Event-ID, the page reads its tasks again when it
 * opens (`onResync`): live stays live, nothing is missed.
 */
export function subscribeTasks(
  onEvent: (event: TaskEvent) => void,
  onStatus: (live: boolean) => void,
  onResync?: () => void,
): () => void {
  let source: EventSource | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  let failures = 0;
  let reopened = false;
  const open = () => {
    const current = new EventSource("/api/v1/tasks/stream", { withCredentials: true });
    source = current;
    current.addEventListener("open", () => {
      failures = 0;
      onStatus(true);
      if (reopened) onResync?.();
    });
    current.addEventListener("error", () => {
      onStatus(false);
      // CONNECTING: the browser retries by itself. CLOSED: it gave up; so do we, for a while.
      if (stopped || current.readyState !== EventSource.CLOSED) return;
      const wait = Math.min(30_000, 2_000 * 2 ** failures) * (0.5 + Math.random() / 2);
      failures += 1;
      reopened = true;
      timer = setTimeout(open, wait);
    });
    current.addEventListener("task", (message) => {
      try {
        onEvent(JSON.parse((message as MessageEvent<string>).data) as TaskEvent);
      } catch {
        // Not an event of this version: ignored.
      }
    });
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    source?.close();
  };
}
