/**
 * Bench dispatcher: `npm run bench` runs every bench, `npm run bench -- broker ...` the named ones.
 * A bench is a file exporting `run(): Promise<void>`; registering one is one line below. Benches
 * are imported on demand, so one bench's dependencies never load for another.
 */
const BENCHES: Record<string, () => Promise<void>> = {
  broker: async () => (await import("./broker.js")).run(),
  ingest: async () => (await import("./ingest.js")).run(),
  alerts: async () => (await import("./alerts.js")).run(),
  edge: async () => (await import("./edge.js")).run(),
  backtest: async () => (await import("./backtest.js")).run(),
  console: async () => (await import("./console.js")).run(),
  fleet: async () => (await import("./fleet.js")).run(),
  query: async () => (await import("./query.js")).run(),
  cluster: async () => (await import("./cluster.js")).run(),
};

function usage(): string {
  return `usage: npm run bench [-- <name>...]\nbenches: ${Object.keys(BENCHES).join(", ")}`;
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(usage());
    return 0;
  }
  const unknown = argv.filter((name) => !Object.hasOwn(BENCHES, name));
  if (unknown.length > 0) {
    console.error(`unknown bench: ${unknown.join(", ")}\n${usage()}`);
    return 1;
  }
  const names = argv.length > 0 ? argv : Object.keys(BENCHES);
  for (const name of names) {
    const bench = BENCHES[name];
    if (bench === undefined) continue;
    console.log(`== bench ${name}`);
    await bench();
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
