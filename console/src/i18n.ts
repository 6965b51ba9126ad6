import { useEffect, useState } from "preact/hooks";
import { en } from "./messages-en.js";
import { type Key, zh } from "./messages-zh.js";

/*
 * The console's words in Chinese (the default, messages-zh.ts) and English (messages-en.ts). The
 * choice is kept in the browser (localStorage) and switches every page at once. Server messages
 * (errors) come in English.
 */

export type Lang = "zh-CN" | "en";
const KEY = "citywatch.lang";

const CATALOGUES: Record<Lang, Record<Key, string>> = { "zh-CN": zh, en };

function stored(): Lang {
  try {
    return localStorage.getItem(KEY) === "en" ? "en" : "zh-CN";
  } catch {
    return "zh-CN";
  }
}

let current: Lang = stored();
const listeners = new Set<(lang: Lang) => void>();

export const lang = (): Lang => current;

export function setLang(next: Lang): void {
  current = next;
  try {
    localStorage.setItem(KEY, next);
  } catch {
    // A browser without storage keeps the choice for this page only.
  }
  document.documentElement.lang = next;
  for (const listener of listeners) listener(next);
}

/** A word of the current language; `{name}` placeholders are filled from `vars`. */
export function t(key: Key, vars: Record<string, string | number> = {}): string {
  const text = CATALOGUES[current][key];
  return text.replace(/\{(\w+)\}/g, (_, name: string) => String(vars[name] ?? `{${name}}`));
}

/** A word looked up by a key made at run time (a state, a kind); the key itself when unknown. */
export function tk(prefix: string, value: string): string {
  const key = `${prefix}.${value}`;
  return key in zh ? t(key as Key) : value;
}

/** Re-render on a language change. */
export function useLang(): Lang {
  const [value, set] = useState(current);
  useEffect(() => {
    listeners.add(set);
    return () => void listeners.delete(set);
  }, []);
  return value;
}

document.documentElement.lang = current;
