/**
 * One timer for the whole fleet. Ten thousand devices with a setInterval each would wake the
 * event loop ten thousand times per period and drift apart; here every pending job sits in one
 * binary heap ordered by due time, and a single setTimeout is armed for the earliest. Jobs due
 * together run in one turn, in the order they were scheduled.
 */
export interface Scheduler {
  /** Run `job` at real time `atMs` (Date.now() scale); earlier than now runs on the next turn. */
  at(atMs: number, job: () => void): void;
  /** Jobs waiting. */
  readonly size: number;
  /** Drop every pending job and disarm the timer. */
  clear(): void;
}

interface Entry {
  readonly atMs: number;
  readonly order: number;
  readonly job: () => void;
}

const before = (a: Entry, b: Entry) => a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order);

export function createScheduler(options: {
  now?: () => number;
  /** Called when a job throws: one device's bug must not stop the others. */
  onError: (error: unknown) => void;
}): Scheduler {
  const now = options.now ?? Date.now;
  const heap: Entry[] = [];
  let order = 0;
  let timer: NodeJS.Timeout | undefined;
  let armedFor = Infinity;

  const swap = (i: number, j: number) => {
    const t = heap[i] as Entry;
    heap[i] = heap[j] as Entry;
    heap[j] = t;
  };
  const push = (e: Entry) => {
    heap.push(e);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i] as Entry, heap[parent] as Entry)) break;
      swap(i, parent);
      i = parent;
    }
  };
  const pop = (): Entry | undefined => {
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l] as Entry, heap[m] as Entry)) m = l;
        if (r < heap.length && before(heap[r] as Entry, heap[m] as Entry)) m = r;
        if (m === i) break;
        swap(i, m);
        i = m;
      }
    }
    return top;
  };

  const arm = () => {
    const next = heap[0];
    if (next === undefined || next.atMs >= armedFor) return;
    if (timer !== undefined) clearTimeout(timer);
    armedFor = next.atMs;
    timer = setTimeout(run, Math.max(0, next.atMs - now()));
  };
  const run = () => {
    timer = undefined;
    armedFor = Infinity;
    const t = now();
    while (heap.length > 0 && (heap[0] as Entry).atMs <= t) {
      const entry = pop() as Entry;
      try {
        entry.job();
      } catch (error) {
        options.onError(error);
      }
    }
    arm();
  };

  return {
    at(atMs, job) {
      push({ atMs, order: order++, job });
      arm();
    },
    get size() {
      return heap.length;
    },
    clear() {
      heap.length = 0;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      armedFor = Infinity;
    },
  };
}
