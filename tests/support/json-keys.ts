/**
 * The keys that occur more than once in one object of a JSON text, at any depth (`JSON.parse`
 * keeps the last silently). Each as `path.key`; empty when there are none. Throws on bad JSON.
 */
export function duplicateKeys(text: string): string[] {
  let i = 0;
  const duplicates: string[] = [];
  const ws = () => {
    while (i < text.length && " \t\r\n".includes(text[i] ?? "")) i++;
  };
  const fail = (what: string): never => {
    throw new Error(`bad JSON at ${i}: ${what}`);
  };
  const string = (): string => {
    if (text[i] !== '"') fail("expected a string");
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): void => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const seen = new Set<string>();
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        ws();
        const key = string();
        if (seen.has(key)) duplicates.push(path === "" ? key : `${path}.${key}`);
        seen.add(key);
        ws();
        if (text[i] !== ":") fail("expected :");
        i++;
        value(path === "" ? key : `${path}.${key}`);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return;
        }
        fail("expected , or }");
      }
    }
    if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (let n = 0; ; n++) {
        value(`${path}[${n}]`);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return;
        }
        fail("expected , or ]");
      }
    }
    if (c === '"') {
      string();
      return;
    }
    const m = /^(true|false|null|-?\d+(\.\d+)?([eE][+-]?\d+)?)/.exec(text.slice(i, i + 64));
    if (m === null) fail("expected a value");
    i += m?.[0].length ?? 0;
  };
  value("");
  ws();
  if (i !== text.length) fail("trailing text");
  return duplicates;
}
