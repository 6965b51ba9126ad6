import type { Hj212MappingInput } from "./mapping.js";

/**
 * An example HJ 212 mapping, for documentation and tests: a construction-site dust monitor that
 * also sends noise as the non-standard `a50001` (so its MN feeds a dust and a noise device), a
 * noise monitor with the standard noise codes, a dust monitor that sends particulates in ng/m³,
 * and a restaurant oil-fume monitor with platform-specific codes.
 *
 * The oil-fume codes (`yy01`, `kl01`, `fj01`, `jh01`) are placeholders: HJ 212 defines no code
 * for oil fume, fan or purifier, each platform assigns its own; take them from the vendor's
 * protocol sheet. `a24088` (NMHC) is standard.
 */
export const EXAMPLE_HJ212_MAPPING = {
  models: {
    "site-dust": {
      kind: "dust",
      factors: {
        a34001: { quantity: "tsp" },
        a34002: { quantity: "pm10" },
        a34004: { quantity: "pm2_5" },
        a01001: { quantity: "temperature" },
        a01002: { quantity: "humidity" },
        a01007: { quantity: "windSpeed" },
        a01008: { quantity: "windDirection" },
      },
    },
    "site-noise-a50001": {
      kind: "noise",
      factors: { a50001: { quantity: "LAeq" } },
    },
    "noise-monitor": {
      kind: "noise",
      factors: {
        Leq: { quantity: "LAeq" },
        LMx: { quantity: "LAmax" },
        LMn: { quantity: "LAmin" },
        L10: { quantity: "L10" },
        L50: { quantity: "L50" },
        L90: { quantity: "L90" },
      },
    },
    "dust-ng": {
      kind: "dust",
      factors: {
        // The standard's own unit: ng/m³ → µg/m³.
        a34002: { quantity: "pm10", scale: 0.001 },
        a34004: { quantity: "pm2_5", scale: 0.001 },
      },
    },
    "oil-fume-example": {
      kind: "cooking_fume",
      factors: {
        yy01: { quantity: "oilFume" },
        kl01: { quantity: "particulate" },
        a24088: { quantity: "nmhc" },
        fj01: { quantity: "fanOn" },
        jh01: { quantity: "purifierOn" },
      },
    },
  },
  devices: {
    "010000A8900016F000169DC0": [
      { deviceId: "site-17-dust", model: "site-dust" },
      { deviceId: "site-17-noise", model: "site-noise-a50001" },
    ],
    NOISE000000000000000001: { deviceId: "noise-3", model: "noise-monitor" },
    // The air-quality monitor of the CN 2051 test vector (docs/hj212.md); its gases have no dust quantity (unmapped).
    JLYP01_AIR01_0001: { deviceId: "air-1", model: "site-dust" },
    DUSTNG0000000000000000001: { deviceId: "site-9-dust", model: "dust-ng" },
    // Same model as site 17, but this unit's firmware sends PM10 in mg/m³.
    DUSTMG0000000000000000001: {
      deviceId: "site-12-dust",
      model: "site-dust",
      scale: { a34002: 1000 },
    },
    "88888880000001": { deviceId: "restaurant-5-fume", model: "oil-fume-example" },
  },
} as const satisfies Hj212MappingInput;
