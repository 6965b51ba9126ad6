/**
 * `citywatch dashboards build` and `check`: every dashboard as Grafana JSON, plus the gazetteer
 * that places devices on the overview map, from the rule pack and a registry (sites with their
 * river levels, devices with their positions). The files are committed under
 * dashboards/generated/ and `check` fails when they differ from a fresh build, so stale ones fail CI.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Device, Rule, Site } from "../contracts/index.js";
import { cityOverviewDashboard } from "./city-overview.js";
import { environmentDashboard } from "./environment.js";
import { fleetHealthDashboard } from "./fleet-health.js";
import { floodDashboard } from "./flood.js";
import { utilityTunnelDashboard } from "./utility-tunnel.js";

export const GENERATED_DIR = new URL("./generated/", import.meta.url).pathname;

export interface BuildInput {
  readonly rules: readonly Rule[];
  readonly sites: readonly Site[];
  readonly devices: readonly Device[];
}

/** Chengdu's centre, where the built-in simulated city lies, for a registry with no devices. */
const DEFAULT_CENTRE = { lat: 30.657, lon: 104.066 };

function centreOf(devices: readonly Device[]): { lat: number; lon: number } {
  if (devices.length === 0) return DEFAULT_CENTRE;
  const mean = (pick: (d: Device) => number) =>
    Math.round((devices.reduce((sum, d) => sum + pick(d), 0) / devices.length) * 1e4) / 1e4;
  return { lat: mean((d) => d.location.lat), lon: mean((d) => d.location.lon) };
}

/** Grafana's gazetteer format for a lookup layer: one point per key (here a device id). */
function gazetteer(devices: readonly Device[]): unknown {
  return [...devices]
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((d) => ({
      key: d.id,
      latitude: d.location.lat,
      longitude: d.location.lon,
      name: `${d.id} (${d.kind}, ${d.siteId})`,
    }));
}

const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;

/** File name → content of every generated file. */
export function buildDashboards(input: BuildInput): Map<string, string> {
  const boards = [
    cityOverviewDashboard(centreOf(input.devices)),
    utilityTunnelDashboard(input.rules),
    floodDashboard(input.rules, input.sites),
    environmentDashboard(input.rules),
    fleetHealthDashboard(),
  ].map((b) => b.build());
  const files = new Map<string, string>();
  for (const board of boards) files.set(`${board.uid ?? board.title}.json`, json(board));
  files.set("citywatch-devices.json", json(gazetteer(input.devices)));
  return files;
}

export function writeDashboards(files: ReadonlyMap<string, string>, dir = GENERATED_DIR): string[] {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of files) writeFileSync(join(dir, name), text);
  return [...files.keys()].map((name) => join(dir, name));
}

/** What differs between a fresh build and the files in `dir`: stale, missing or left over. */
export function staleDashboards(files: ReadonlyMap<string, string>, dir = GENERATED_DIR): string[] {
  const problems: string[] = [];
  let present: string[] = [];
  try {
    present = readdirSync(dir).filter((f) => f.endsWith(".json"));
  } catch {
    return [`${dir} does not exist`];
  }
  for (const [name, text] of files) {
    if (!present.includes(name)) problems.push(`${name} is missing`);
    else if (readFileSync(join(dir, name), "utf8") !== text) problems.push(`${name} is stale`);
  }
  for (const name of present) if (!files.has(name)) problems.push(`${name} is not generated`);
  return problems;
}
