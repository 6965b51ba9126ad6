import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/*
 * Build the console into console/dist: the strict type check of its sources (console/tsconfig.json),
 * then Vite. npm runs this as the `prepare` script of `npm ci`, so the README's two commands stay
 * the only ones. Without the dev dependencies (`npm ci --omit=dev`) there is no Vite: it says so
 * and builds nothing; the server then answers / with a page saying how to build the console.
 */
const require = createRequire(import.meta.url);
const here = fileURLToPath(new URL(".", import.meta.url));

function has(module: string): boolean {
  try {
    require.resolve(module);
    return true;
  } catch {
    return false;
  }
}

if (!has("vite") || !has("preact") || !has("typescript")) {
  process.stdout.write(
    "console: not built (vite, preact or typescript is not installed: npm ci without --omit=dev builds it)\n",
  );
  process.exit(0);
}

const tsc = spawnSync(
  process.execPath,
  [require.resolve("typescript/bin/tsc"), "-p", `${here}tsconfig.json`, "--noEmit"],
  { stdio: "inherit" },
);
if (tsc.status !== 0) {
  process.stderr.write("console: the type check failed; not built\n");
  process.exit(1);
}

const { build } = await import("vite");
await build({ configFile: `${here}vite.config.ts`, logLevel: "warn" });
if (!existsSync(`${here}dist/index.html`)) {
  process.stderr.write("console: the build wrote no dist/index.html\n");
  process.exit(1);
}
process.stdout.write(`console: built into ${here}dist\n`);
