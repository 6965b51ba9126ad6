#!/usr/bin/env -S node --max-semi-space-size=64
// Runs the TypeScript CLI through tsx, so `npx citywatch` works from a checkout without a build.
// A 64 MiB young generation: the ingest allocates short-lived objects for every reading, and with
// V8's default the scavenger promotes in-flight batches and ran a third of the process's time
// (npm run bench -- ingest: about 1.8x the throughput and 0.7x the CPU per reading with it).
import { register } from "tsx/esm/api";

register();
await import("../cli/citywatch.ts");
