/** Deterministic, seeded signal models: (seed, params, simulated time) → readings. */
export * from "./random.js";
export * from "./instrument.js";
export * from "./weather.js";
export * from "./noise.js";
export * from "./dust.js";
export * from "./cooking-fume.js";
export * from "./rainstorm.js";
export * from "./water-level.js";
export * from "./utility-tunnel.js";
