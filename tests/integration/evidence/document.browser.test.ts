import { execFileSync } from "node:child_process";
import { accessSync, constants, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import jsqr from "jsqr";
import { chromium, type Browser, type Page } from "playwright-core";
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { renderEvidenceDocument } from "../../../tasks/evidence-html.js";
import { EvidenceLinks, evidenceLinkKeyFile } from "../../../tasks/evidence-links.js";
import { testApi } from "../../support/ingest.js";
import { freePort } from "../../support/ports.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import type { Provided } from "../../support/provide.js";
import { expectLikeBaseline } from "../../support/screenshot.js";
import { requireService } from "../../support/suite.js";
import { methanePackage, nightNoisePackage } from "../../unit/tasks/evidence-document-fixtures.js";
import {
  DEVICES,
  noiseEvidence,
  noiseNotice,
  raise,
  registry,
  SITES,
  startSystem,
} from "../../unit/tasks/fixtures.js";

/*
 * The printable evidence document in a real browser: Debian's chromium driven by playwright-core
 * (its executablePath; nothing downloads a browser) against the real task API listening on a
 * loopback port. A signed link from the API opens the document without a token; the page shows
 * local time (22:10, not 14:10), Chinese labels drawn with a CJK font, the rounded value and the
 * limit with units, the warning box and a QR code that decodes to the keys address; the layout
 * holds at A4 width (nothing wider than the page, no table overflowing, the signature block on
 * one printed page); the page prints to an A4 PDF; an expired or altered link answers 403.
 *
 * Needs `chromium` and `fonts-noto-cjk` (apt-get install -y chromium fonts-noto-cjk): a clear
 * skip without them, a failure under CITYWATCH_REQUIRE_SERVICES=1. CITYWATCH_CHROMIUM names
 * another binary. CITYWATCH_SCREENSHOT_DIR keeps a copy of the screenshot for a human to look at.
 */

const HOUR = 3_600_000;
/** The first A4 page of the noise case as chromium drew it (CITYWATCH_UPDATE_BASELINE=1 redraws). */
const BASELINE = new URL("./document-top.baseline.png", import.meta.url);

/** jsQR is CommonJS: its default export is the function or carries it, by loader. */
type DecodeQr = typeof jsqr.default;
const decodeQr: DecodeQr =
  typeof (jsqr as unknown) === "function" ? (jsqr as unknown as DecodeQr) : jsqr.default;

/** Layout facts of the page at A4 width (run in the page; no DOM types in this project). */
interface Geometry {
  readonly width: number;
  readonly scrollWidth: number;
  readonly widest: number;
  readonly overflow: number;
  readonly tables: number;
  readonly qr: { readonly w: number; readonly h: number; readonly right: number } | null;
  readonly sign: { readonly h: number; readonly right: number } | null;
}
const GEOMETRY = `(() => {
  const width = document.documentElement.clientWidth;
  const tables = [...document.querySelectorAll("table")].map((t) => ({
    right: t.getBoundingClientRect().right,
    overflow: t.scrollWidth - t.clientWidth,
  }));
  const qr = document.querySelector("svg.qr")?.getBoundingClientRect();
  const sign = document.querySelector("#signatures")?.getBoundingClientRect();
  return {
    width,
    scrollWidth: document.documentElement.scrollWidth,
    widest: Math.max(...tables.map((t) => t.right)),
    overflow: Math.max(...tables.map((t) => t.overflow)),
    tables: tables.length,
    qr: qr === undefined ? null : { w: qr.width, h: qr.height, right: qr.right },
    sign: sign === undefined ? null : { h: sign.height, right: sign.right },
  };
})()`;
/** A4 at 96 CSS px per inch: 210 mm wide. */
const A4_WIDTH = 794;
const A4_HEIGHT = 1123;

function provideChromium(): Promise<Provided> {
  const executable = process.env["CITYWATCH_CHROMIUM"] ?? "/usr/bin/chromium";
  try {
    accessSync(executable, constants.X_OK);
  } catch {
    return Promise.resolve({
      ok: false,
      reason: `no chromium at ${executable} (apt-get install -y chromium, or set CITYWATCH_CHROMIUM)`,
    });
  }
  let fonts = "";
  try {
    fonts = execFileSync("fc-list", [":lang=zh"], { encoding: "utf8" });
  } catch {
    fonts = "";
  }
  if (!/Noto Sans CJK/i.test(fonts))
    return Promise.resolve({
      ok: false,
      reason: "no Chinese font (apt-get install -y fonts-noto-cjk)",
    });
  return Promise.resolve({
    ok: true,
    service: { url: executable, source: "local-binary", stop: () => Promise.resolve() },
  });
}

const browserService = await requireService("evidence document in chromium", provideChromium);

describe.runIf(browserService)("printable evidence document in chromium", () => {
  let dir: string;
  let system: TaskSystem;
  let state: IngestState;
  let store: TimeSeriesStore;
  let app: ReturnType<typeof testApi>;
  let base: string;
  let links: EvidenceLinks;
  let viewer: string;
  let browser: Browser;
  let page: Page;
  let url: string;
  const noise = nightNoisePackage();

  beforeAll(async () => {
    dir = await makeTempDir("cw-evidence-browser-");
    const data = join(dir, "data");
    mkdirSync(data);
    system = startSystem(data, { now: Date.now });
    // The fixture packages as the task store keeps sealed ones.
    system.store.addEvidence(noise, Date.now());
    system.store.addEvidence(methanePackage(), Date.now());
    state = new IngestState(join(data, "ingest.db"));
    store = createSqliteStore(join(data, "timeseries.db"));
    await store.open();
    // A free port first: the links carry the address recipients reach the API at.
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    links = EvidenceLinks.open(evidenceLinkKeyFile(data), {
      ttlMs: HOUR,
      baseUrl: base,
      now: Date.now,
    });
    app = testApi({
      registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
      state,
      store,
      metrics: [system.metrics.registry],
      tasks: { ...system.api, evidenceLinks: links },
    });
    await app.listen({ host: "127.0.0.1", port });
    viewer = system.tokens.add("viewer-1", "viewer").token;
    browser = await chromium.launch({
      executablePath: browserService!.url,
      args: ["--no-sandbox", "--disable-gpu"],
    });
    // A context with no credentials at all: the link must do.
    const context = await browser.newContext({
      viewport: { width: A4_WIDTH, height: A4_HEIGHT },
      locale: "zh-CN",
      timezoneId: "UTC", // the page's times must not come from the browser's zone
    });
    page = await context.newPage();
    const res = await fetch(`${base}/api/v1/tasks/${noise.taskId}/evidence/link`, {
      headers: { authorization: `Bearer ${viewer}` },
    });
    expect(res.status).toBe(200);
    url = ((await res.json()) as { url: string }).url;
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await system?.stop();
    state?.close();
    await store?.close();
    await removeTempDir(dir);
  });

  it("the API needs a token to issue a link; the link opens the document without one", async () => {
    expect((await fetch(`${base}/api/v1/tasks/${noise.taskId}/evidence/link`)).status).toBe(401);
    expect(url.startsWith(`${base}/evidence/${noise.taskId}/2?lang=zh-CN&expires=`)).toBe(true);
    const response = await page.goto(url);
    expect(response?.status()).toBe(200);
    const headers = response?.headers() ?? {};
    expect(headers["content-security-policy"]).toBe(
      "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    );
    expect(headers["cache-control"]).toBe("private, no-store");
    expect(headers["referrer-policy"]).toBe("no-referrer");
    expect(await page.title()).toBe("非现场执法证据 enf-000042 #2");
  });

  it("shows local time, Chinese labels drawn with a CJK font, the rounded value and limit, the warning", async () => {
    await page.goto(url);
    const sentence = await page.locator("#finding-sentence").innerText();
    expect(sentence).toContain("2026-12-05 22:10–22:30 (UTC+08:00)");
    expect(sentence).toContain("64.2 dB(A)");
    expect(sentence).toContain("超过限值 55 dB(A)");
    const body = await page.locator("body").innerText();
    // No UTC clock time of the package's instants (22:10 local is 14:10 UTC). The printing time is
    // now, in local time: between 14:00 and 15:00 local it would match, so it is left out here.
    const packageText = body
      .split("\n")
      .filter((line) => !line.startsWith("打印时间"))
      .join("\n");
    expect(packageText).not.toMatch(/(?<![\d:])1[34]:[0-5]\d/);
    expect(body).not.toContain("64.2119");
    for (const label of ["案件编号", "当事人", "统一社会信用代码", "执法证号", "当事人签字"])
      expect(body).toContain(label);
    expect(await page.locator("#reported-value").innerText()).toBe("64.2 dB(A)");
    expect(await page.locator("#limit-value").innerText()).toBe("55 dB(A)");
    const warning = page.locator(".warning").first();
    expect(await warning.isVisible()).toBe(true);
    expect(await warning.innerText()).toContain("判定时该设备校准已过期");
    const colour = await page.evaluate<string>(
      `getComputedStyle(document.querySelector(".warning")).borderTopColor`,
    );
    expect(colour).toBe("rgb(192, 0, 0)");
    // The fonts the browser drew the Chinese heading with: a CJK font, not a fallback's boxes.
    const cdp = await page.context().newCDPSession(page);
    const { root } = await cdp.send("DOM.getDocument");
    const { nodeId } = await cdp.send("DOM.querySelector", { nodeId: root.nodeId, selector: "h1" });
    await cdp.send("CSS.enable");
    const { fonts } = await cdp.send("CSS.getPlatformFontsForNode", { nodeId });
    expect(fonts.map((f) => f.familyName).join(", ")).toMatch(/Noto Sans CJK/);
    await cdp.detach();
  });

  it("holds its layout at A4 width; the QR code decodes to the keys address", async () => {
    await page.goto(url);
    const geometry = await page.evaluate<Geometry>(GEOMETRY);
    expect(geometry.width).toBe(A4_WIDTH);
    expect(geometry.scrollWidth).toBeLessThanOrEqual(A4_WIDTH);
    expect(geometry.tables).toBeGreaterThan(8);
    expect(geometry.widest).toBeLessThanOrEqual(A4_WIDTH);
    expect(geometry.overflow).toBeLessThanOrEqual(0);
    expect(geometry.qr?.w).toBeGreaterThanOrEqual(100); // 32 mm
    expect(geometry.qr?.right).toBeLessThanOrEqual(A4_WIDTH);
    expect(geometry.sign?.right).toBeLessThanOrEqual(A4_WIDTH);
    // Printed, the signature block fits one A4 page (263 mm between the margins): never split.
    await page.emulateMedia({ media: "print" });
    const printed = await page.locator("#signatures").boundingBox();
    await page.emulateMedia({ media: "screen" });
    expect(printed?.height ?? Infinity).toBeLessThan((263 / 25.4) * 96);

    const shot = join(dir, "evidence-document.png");
    await page.screenshot({ path: shot, fullPage: true });
    const png = PNG.sync.read(await page.screenshot({ fullPage: true }));
    expect(png.width).toBe(A4_WIDTH);
    expect(png.height).toBeGreaterThan(A4_HEIGHT);
    const keep = process.env["CITYWATCH_SCREENSHOT_DIR"];
    if (keep !== undefined) {
      mkdirSync(keep, { recursive: true });
      copyFileSync(shot, join(keep, "evidence-document.png"));
    }

    const qr = PNG.sync.read(await page.locator("svg.qr").screenshot());
    const decoded = decodeQr(new Uint8ClampedArray(qr.data), qr.width, qr.height);
    expect(decoded?.data).toBe(`${base}/api/v1/evidence/keys`);
  });

  it("prints to an A4 PDF with the Chinese font embedded", async () => {
    await page.goto(url);
    const pdf = await page.pdf({ format: "A4", printBackground: true });
    writeFileSync(join(dir, "evidence-document.pdf"), pdf);
    expect(pdf.subarray(0, 5).toString("latin1")).toBe("%PDF-");
    const text = pdf.toString("latin1");
    // A4 in PDF points: 595 × 842.
    expect(text).toMatch(
      /\/MediaBox \[0 0 595(?:\.\d+)? 841(?:\.\d+)?\]|\/MediaBox \[0 0 595(?:\.\d+)? 842(?:\.\d+)?\]/,
    );
    expect((text.match(/\/Type \/Page\b/g) ?? []).length).toBeGreaterThanOrEqual(2);
    expect(text).toMatch(/NotoSansCJK/);
  });

  it("draws the first A4 page as the committed baseline (pixel comparison with a tolerance)", async () => {
    // Fixed content: no print time from the clock; the first page holds no hash or signature.
    const html = renderEvidenceDocument(noise, {
      language: "zh-CN",
      verifyUrl: "https://cw.example.gov.cn/api/v1/evidence/keys",
      generatedAt: new Date("2026-12-06T01:00:00Z"),
    });
    await page.setContent(html);
    // At most 0.5 % of the pixels differ (anti-aliasing); a moved block or a lost font is far more.
    expectLikeBaseline(
      await page.screenshot({ clip: { x: 0, y: 0, width: A4_WIDTH, height: A4_HEIGHT } }),
      BASELINE,
      dir,
    );
  });

  it("opens a package the task service sealed itself (the real path, format 2, signed)", async () => {
    // Night construction noise decided at 22:30 Beijing time over 22:10–22:30.
    const at = Date.UTC(2026, 11, 5, 14, 30);
    await system.service.applyAlarm(noiseNotice("cs-1", raise(at), noiseEvidence(at)));
    const task = system.store.listTasks({ limit: 10, ruleId: "noise.construction.laeq" })[0];
    expect(task?.evidenceCount).toBe(1);
    const sealed = system.store.evidence(task!.id);
    expect(sealed?.format).toBe("citywatch-evidence/2");
    const res = await fetch(`${base}/api/v1/tasks/${task!.id}/evidence/link`, {
      headers: { authorization: `Bearer ${viewer}` },
    });
    const link = ((await res.json()) as { url: string }).url;
    const response = await page.goto(link);
    expect(response?.status()).toBe(200);
    const sentence = await page.locator("#finding-sentence").innerText();
    expect(sentence).toContain("2026-12-05 22:10–22:30 (UTC+08:00)");
    expect(sentence).toMatch(/LAeq \d+\.\d dB\(A\)，超过限值 55 dB\(A\)/);
    expect(await page.locator("#package-hash").innerText()).toBe(sealed!.hash.value);
    expect(await page.locator("table.readings tbody tr").count()).toBe(sealed!.readings.length);
    // The fixture devices carry no approval numbers: the builder's warnings, in Chinese.
    expect(await page.locator(".warning").first().innerText()).toContain("该设备未登记");
  });

  it("answers an expired or altered link with a 403 page, in the browser", async () => {
    const earlier = EvidenceLinks.open(evidenceLinkKeyFile(join(dir, "data")), {
      ttlMs: HOUR,
      baseUrl: base,
      now: () => Date.now() - 2 * HOUR, // issued two hours ago: expired an hour ago
    });
    const expired = await page.goto(earlier.create(noise.taskId, 2).url);
    expect(expired?.status()).toBe(403);
    expect(await page.locator("h1").innerText()).toBe("链接已过期");
    expect(await page.locator("body").innerText()).toContain("请索取新链接");

    const sig = new URL(url).searchParams.get("sig") ?? "";
    const altered = await page.goto(url.replace(`/${noise.taskId}/2?`, `/${noise.taskId}/1?`));
    expect(altered?.status()).toBe(403);
    expect(await page.locator("h1").innerText()).toBe("链接无效");
    const forged = await page.goto(url.replace(sig, "A".repeat(43)));
    expect(forged?.status()).toBe(403);
    // The genuine link still works in English.
    const english = await page.goto(url.replace("lang=zh-CN", "lang=en"));
    expect(english?.status()).toBe(200);
    expect(await page.locator("h1").innerText()).toBe("Off-site enforcement evidence");
  });
});
