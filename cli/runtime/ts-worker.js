// A worker thread's entry: tsx registered in this thread (a worker does not inherit the main
// thread's loader hooks), then the TypeScript module named in workerData.module.
import { workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
await import(workerData.module);
