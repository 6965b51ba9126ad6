import type { ComponentChildren } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

/*
 * A list that draws only the rows in view (plus a few above and below), each of a fixed height,
 * inside one scrolling box: 10,000 rows cost what 30 do. Scrolling re-renders at most once a
 * frame.
 */
export function VirtualList<T>(props: {
  items: readonly T[];
  rowHeight: number;
  keyOf: (item: T) => string;
  render: (item: T, index: number) => ComponentChildren;
  overscan?: number;
  label: string;
}) {
  const { items, rowHeight, keyOf, render, overscan = 6, label } = props;
  const box = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  const frame = useRef(0);

  useLayoutEffect(() => {
    const el = box.current;
    if (el === null) return;
    setHeight(el.clientHeight);
    const observer = new ResizeObserver(() => setHeight(el.clientHeight));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  useEffect(() => () => cancelAnimationFrame(frame.current), []);

  const onScroll = () => {
    if (frame.current !== 0) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = 0;
      if (box.current !== null) setScrollTop(box.current.scrollTop);
    });
  };

  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(items.length, Math.ceil((scrollTop + height) / rowHeight) + overscan);
  const rows: ComponentChildren[] = [];
  for (let i = first; i < last; i++) {
    const item = items[i] as T;
    rows.push(
      <div
        key={keyOf(item)}
        role="listitem"
        class="vrow"
        style={{ transform: `translateY(${i * rowHeight}px)`, height: `${rowHeight}px` }}
      >
        {render(item, i)}
      </div>,
    );
  }
  return (
    <div ref={box} class="vlist" onScroll={onScroll} role="list" aria-label={label} tabIndex={0}>
      <div class="vlist-inner" style={{ height: `${items.length * rowHeight}px` }}>
        {rows}
      </div>
    </div>
  );
}
