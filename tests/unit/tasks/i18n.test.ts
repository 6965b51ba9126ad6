import { describe, expect, it } from "vitest";
import { CATALOGUES, LANGUAGES, translator } from "../../../tasks/i18n/index.js";

/*
 * The evidence document's message catalogues: zh-CN and en have exactly the same keys, no empty
 * message, the same interpolation variables per message, and i18next serves them.
 */

/** Every leaf of a catalogue as `path → message`. */
function leaves(value: unknown, path = "", out = new Map<string, unknown>()): Map<string, unknown> {
  if (typeof value === "object" && value !== null) {
    for (const [k, v] of Object.entries(value)) leaves(v, path === "" ? k : `${path}.${k}`, out);
  } else out.set(path, value);
  return out;
}

const variables = (message: string): string[] =>
  [...message.matchAll(/\{\{\s*([^}\s]+)\s*\}\}/g)].map((m) => m[1] ?? "").sort();

describe("evidence document catalogues", () => {
  const zh = leaves(CATALOGUES["zh-CN"]);
  const en = leaves(CATALOGUES.en);

  it("zh-CN and en have the same keys, each a non-empty string", () => {
    expect([...zh.keys()].sort()).toEqual([...en.keys()].sort());
    expect(zh.size).toBeGreaterThan(200);
    for (const [lang, messages] of [
      ["zh-CN", zh],
      ["en", en],
    ] as const)
      for (const [key, message] of messages) {
        expect(typeof message, `${lang} ${key}`).toBe("string");
        expect((message as string).trim(), `${lang} ${key}`).not.toBe("");
      }
  });

  it("a message interpolates the same variables in both languages", () => {
    for (const [key, message] of en)
      expect(variables(zh.get(key) as string), key).toEqual(variables(message as string));
  });

  it("holds no markup (the renderer escapes whole messages)", () => {
    for (const messages of [zh, en])
      for (const [key, message] of messages) {
        // `<package file>`-style placeholders in the verification command are text, not tags.
        if (key === "integrity.command" || key === "integrity.keysFile") continue;
        expect(message as string, key).not.toMatch(/<[a-z/]/i);
      }
  });

  it("serves both languages through i18next, with interpolation and no fallback", () => {
    expect(LANGUAGES).toEqual(["zh-CN", "en"]);
    const zhT = translator("zh-CN");
    const enT = translator("en");
    expect(zhT.t("quality.calibration")).toBe("校准中");
    expect(enT.t("quality.calibration")).toBe("calibrating");
    expect(zhT.t("doc.packageOf", { sequence: 3 })).toBe("第 3 号");
    expect(enT.t("duration.minutes", { count: 20 })).toBe("20 min");
    // A value with markup is interpolated as it is (the caller escapes), never interpreted.
    expect(enT.t("transport.step.device", { id: "<b>x</b>" })).toBe("device <b>x</b>");
    expect(zhT.maybe("quality.unheard_of")).toBeUndefined();
    expect(zhT.maybe("doc.title")).toBeUndefined(); // a group, not a message
    expect(() => zhT.t("no.such.key")).toThrow(/no message no.such.key in the zh-CN catalogue/);
  });
});
