import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import {
  DeviceConfig,
  LocalThreshold,
  problemsOf,
  QUANTITIES,
  type QuantitySpec,
  type SensorKind,
} from "../../contracts/index.js";

/**
 * Remote configuration (docs/protocol.md 7): the retained `config` message of a device is
 * checked whole, applied whole or not at all, and each revision is handled once. What was handled
 * is kept in a small JSON file per device, written atomically (temporary file, fsync, rename), so
 * a restart neither applies a revision again nor forgets the settings it set.
 */

/** The settings a revision may set: those the agent supports (7.2: anything else is refused). */
export interface RemoteSettings {
  readonly reportIntervalS?: number;
  readonly localThresholds?: readonly LocalThreshold[];
}

/** The per-device record on disk. */
export const HandledRevision = z.strictObject({
  /** The last revision answered, applied or rejected. */
  revision: z.number().int().min(1),
  status: z.enum(["applied", "rejected"]),
  problems: z.array(z.string()).optional(),
  /** The settings of the last revision applied (still in force after a rejection). */
  applied: z
    .strictObject({
      revision: z.number().int().min(1),
      reportIntervalS: z.number().int().min(1).optional(),
      localThresholds: z.array(LocalThreshold).optional(),
    })
    .optional(),
});
export type HandledRevision = z.infer<typeof HandledRevision>;

export type ConfigCheck =
  | { readonly ok: true; readonly revision: number; readonly settings: RemoteSettings }
  /** `revision` is absent when not even it could be read: nothing can be answered. */
  | { readonly ok: false; readonly revision?: number; readonly problems: string[] };

const MAX_PROBLEMS = 32;
const MAX_PROBLEM_CHARS = 500;

/** Checks a config payload for this device: the contract, then what this agent supports. */
export function checkDeviceConfig(
  payload: Buffer,
  device: { readonly deviceId: string; readonly kind: SensorKind },
  limits: { readonly minReportIntervalS: number },
): ConfigCheck {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString("utf8"));
  } catch (error) {
    return { ok: false, problems: [`not JSON: ${(error as Error).message}`] };
  }
  const rawRevision = (json as { revision?: unknown } | null)?.revision;
  const revision =
    typeof rawRevision === "number" && Number.isSafeInteger(rawRevision) && rawRevision >= 1
      ? rawRevision
      : undefined;
  const parsed = DeviceConfig.safeParse(json);
  const problems: string[] = parsed.success
    ? []
    : problemsOf(parsed.error).map((p) => `${p.path}: ${p.message}`);
  if (parsed.success) {
    const config = parsed.data;
    if (config.deviceId !== device.deviceId) {
      problems.push(`deviceId ${config.deviceId} is not this device (${device.deviceId})`);
    }
    if (config.kind !== device.kind) {
      problems.push(`kind ${config.kind} is not this device's kind (${device.kind})`);
    }
    if (
      config.reportIntervalS !== undefined &&
      config.reportIntervalS < limits.minReportIntervalS
    ) {
      problems.push(
        `reportIntervalS ${config.reportIntervalS} is below this agent's minimum of ${limits.minReportIntervalS} s`,
      );
    }
    const specs: Readonly<Record<string, QuantitySpec>> = QUANTITIES[device.kind];
    (config.localThresholds ?? []).forEach((t, i) => {
      const spec = specs[t.quantity];
      if (spec === undefined) {
        problems.push(
          `localThresholds[${i}]: quantity ${JSON.stringify(t.quantity)} is not measured by a ${device.kind} device`,
        );
      } else if (spec.type !== "number") {
        problems.push(`localThresholds[${i}]: ${t.quantity} is a switch, not a level`);
      }
    });
    if (problems.length === 0) {
      return {
        ok: true,
        revision: config.revision,
        settings: {
          ...(config.reportIntervalS !== undefined
            ? { reportIntervalS: config.reportIntervalS }
            : {}),
          ...(config.localThresholds !== undefined
            ? { localThresholds: config.localThresholds }
            : {}),
        },
      };
    }
  }
  const bounded = problems.slice(0, MAX_PROBLEMS).map((p) => p.slice(0, MAX_PROBLEM_CHARS));
  return revision === undefined
    ? { ok: false, problems: bounded }
    : { ok: false, revision, problems: bounded };
}

/** The handled revisions of the agent's devices, one file each in `dir`. */
export class RevisionStore {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** The device's record; undefined when none, or when the file is damaged (`problem` says why). */
  load(deviceId: string): { record?: HandledRevision; problem?: string } {
    let text: string;
    try {
      text = readFileSync(this.file(deviceId), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
      return { problem: (error as Error).message };
    }
    try {
      const parsed = HandledRevision.safeParse(JSON.parse(text));
      return parsed.success
        ? { record: parsed.data }
        : { problem: parsed.error.issues.map((i) => i.message).join("; ") };
    } catch (error) {
      return { problem: (error as Error).message };
    }
  }

  save(deviceId: string, record: HandledRevision): void {
    const file = this.file(deviceId);
    const temporary = `${file}.tmp`;
    const fd = openSync(temporary, "w");
    try {
      writeSync(fd, JSON.stringify(record));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, file);
    // The rename is durable only once the directory entry is.
    const dirFd = openSync(this.dir, "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }

  private file(deviceId: string): string {
    // Device ids are [A-Za-z0-9_.-] and start with a letter or digit: safe as a file name.
    return join(this.dir, `${deviceId}.json`);
  }
}
