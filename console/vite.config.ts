import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

/*
 * The operators' console (docs/console.md): Preact with the automatic JSX runtime, built into
 * console/dist, which the citywatch process serves at / (cli/runtime/console.ts). `npm ci` builds
 * it (the `prepare` script runs console/build.ts). For development, `npx vite --config
 * console/vite.config.ts` serves it with hot reload and sends /api to a running `npm start`.
 */
const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  base: "/",
  // Nothing from the machine's environment reaches the bundle.
  envPrefix: "CITYWATCH_CONSOLE_",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: fileURLToPath(new URL("./dist", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    reportCompressedSize: false,
    chunkSizeWarningLimit: 300,
  },
  server: {
    proxy: { "/api": "http://127.0.0.1:18080", "/evidence": "http://127.0.0.1:18080" },
  },
});
