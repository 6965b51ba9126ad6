import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pixelmatch from "pixelmatch";
import { PNG } from "pngjs";
import { expect } from "vitest";

/*
 * Screenshot tests against committed baselines: chromium's drawing compared pixel by pixel with a
 * tolerance (pixelmatch threshold 0.1, at most 0.5 % of the pixels differing: anti-aliasing
 * passes, a moved block, a lost font or a changed colour does not). CITYWATCH_UPDATE_BASELINE=1
 * redraws the baselines; a missing one is drawn and the test fails, so a new baseline is looked
 * at before it is committed. On a failure the actual drawing and the difference are written to
 * `scratchDir` (and to CITYWATCH_SCREENSHOT_DIR when set, to look at them).
 */

export function expectLikeBaseline(png: Buffer, baseline: URL, scratchDir: string): void {
  const actual = PNG.sync.read(png);
  const name =
    baseline.pathname
      .split("/")
      .at(-1)
      ?.replace(/\.baseline\.png$/, "") ?? "shot";
  if (process.env["CITYWATCH_UPDATE_BASELINE"] === "1" || !existsSync(baseline)) {
    writeFileSync(baseline, PNG.sync.write(actual));
    if (process.env["CITYWATCH_UPDATE_BASELINE"] !== "1")
      throw new Error(`no baseline: drew ${baseline.pathname}; look at it, commit it, run again`);
  }
  const expected = PNG.sync.read(readFileSync(baseline));
  expect([actual.width, actual.height], name).toEqual([expected.width, expected.height]);
  const diff = new PNG({ width: actual.width, height: actual.height });
  const differing = pixelmatch(expected.data, actual.data, diff.data, actual.width, actual.height, {
    threshold: 0.1,
  });
  const share = differing / (actual.width * actual.height);
  if (share > 0.005) {
    const files = [`${name}.actual.png`, `${name}.diff.png`];
    writeFileSync(join(scratchDir, files[0] ?? ""), PNG.sync.write(actual));
    writeFileSync(join(scratchDir, files[1] ?? ""), PNG.sync.write(diff));
    const keep = process.env["CITYWATCH_SCREENSHOT_DIR"];
    if (keep !== undefined) {
      mkdirSync(keep, { recursive: true });
      for (const file of files) copyFileSync(join(scratchDir, file), join(keep, file));
    }
  }
  expect(
    share,
    `${name}: ${differing} pixels differ (CITYWATCH_UPDATE_BASELINE=1 redraws)`,
  ).toBeLessThanOrEqual(0.005);
}
