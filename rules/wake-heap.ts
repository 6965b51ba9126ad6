/*
 * The subjects a quiet-ticks driver (rules/quiet.ts) has put to sleep, by the instant they wake,
 * on their data clock: a binary min-heap, so a tick looks only at the subjects due rather than at
 * every subject of the city.
 */
export class WakeHeap<T> {
  readonly #at: number[] = [];
  readonly #items: T[] = [];

  get size(): number {
    return this.#at.length;
  }

  clear(): void {
    this.#at.length = 0;
    this.#items.length = 0;
  }

  push(at: number, item: T): void {
    const a = this.#at;
    const items = this.#items;
    let i = a.length;
    a.push(at);
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((a[parent] as number) <= at) break;
      a[i] = a[parent] as number;
      items[i] = items[parent] as T;
      i = parent;
    }
    a[i] = at;
    items[i] = item;
  }

  /** The earliest wake, or +Infinity when empty. */
  peek(): number {
    return this.#at.length === 0 ? Number.POSITIVE_INFINITY : (this.#at[0] as number);
  }

  /** Remove and return the item with the earliest wake (undefined when empty). */
  pop(): T | undefined {
    const a = this.#at;
    const items = this.#items;
    if (a.length === 0) return undefined;
    const top = items[0];
    const lastAt = a.pop() as number;
    const lastItem = items.pop() as T;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && (a[r] as number) < (a[l] as number) ? r : l;
        if ((a[c] as number) >= lastAt) break;
        a[i] = a[c] as number;
        items[i] = items[c] as T;
        i = c;
      }
      a[i] = lastAt;
      items[i] = lastItem;
    }
    return top;
  }
}
