import i18next, { type i18n } from "i18next";
import type { Catalogue } from "./catalogue.js";
import { en } from "./en.js";
import { zhCN } from "./zh-CN.js";

/*
 * Message catalogues of the printable evidence document, served by i18next (one instance per
 * language, built synchronously from the catalogues in this directory: nothing is loaded at run
 * time). zh-CN is the default language, English the other one. Messages interpolate with
 * `{{name}}` and carry no markup; callers escape what they print.
 */

export const LANGUAGES = ["zh-CN", "en"] as const;
export type Language = (typeof LANGUAGES)[number];
export const DEFAULT_LANGUAGE: Language = "zh-CN";

export const CATALOGUES: Readonly<Record<Language, Catalogue>> = { "zh-CN": zhCN, en };

/** A message lookup bound to one language. */
export interface Translator {
  readonly language: Language;
  /** The message `key` with `vars` interpolated; throws for a key the catalogue lacks. */
  t(key: string, vars?: Readonly<Record<string, string | number>>): string;
  /** The message `key` if the catalogue has it, else undefined (codes from data: flags, actions). */
  maybe(key: string, vars?: Readonly<Record<string, string | number>>): string | undefined;
}

const instances = new Map<Language, i18n>();

function instance(language: Language): i18n {
  const existing = instances.get(language);
  if (existing !== undefined) return existing;
  const created = i18next.createInstance();
  void created.init({
    lng: language,
    fallbackLng: false,
    resources: { [language]: { translation: CATALOGUES[language] } },
    initAsync: false,
    // The renderer escapes whole messages; interpolated values must not be escaped twice.
    interpolation: { escapeValue: false },
    returnNull: false,
    returnEmptyString: false,
    // Message keys hold dots only as separators; `edge agent`-style keys hold spaces, no colons.
    nsSeparator: false,
  });
  instances.set(language, created);
  return created;
}

export function translator(language: Language): Translator {
  const i18n = instance(language);
  const maybe = (key: string, vars?: Readonly<Record<string, string | number>>) => {
    // A key of a group (an object) is no message: only string leaves are.
    if (typeof i18n.getResource(language, "translation", key) !== "string") return undefined;
    const value: unknown = i18n.t(key, { ...vars });
    return typeof value === "string" ? value : undefined;
  };
  return {
    language,
    maybe,
    t(key, vars) {
      const value = maybe(key, vars);
      if (value === undefined) throw new Error(`no message ${key} in the ${language} catalogue`);
      return value;
    },
  };
}
