import { describe, expect, it } from "vitest";
import { IngestConfig, problemsOf } from "../../../../contracts/index.js";
import { TasksConfig } from "../../../../contracts/config/tasks.js";

describe("ingest.tasks configuration", () => {
  it("has working defaults under ingest.tasks", () => {
    const config = IngestConfig.parse({}).tasks;
    expect(config.sla.emergency).toEqual({
      handleWithinMs: 7_200_000,
      closeWithinMs: 86_400_000,
      from: "filed",
    });
    expect(config.outbox.maxPending).toBe(10_000);
    expect(config.webhooks).toEqual([]);
  });

  it("takes durations as milliseconds or strings with units", () => {
    const config = TasksConfig.parse({
      sla: { enforcement: { handleWithinMs: "72h", closeWithinMs: 604_800_000 } },
      graduated: { periodMs: "180d", rectifyWithinByRule: { "noise.construction.laeq": "1d12h" } },
      tickMs: "15000",
    });
    expect(config.sla.enforcement).toEqual({
      handleWithinMs: 259_200_000,
      closeWithinMs: 604_800_000,
      from: "filed",
    });
    expect(config.graduated.periodMs).toBe(180 * 86_400_000);
    expect(config.graduated.rectifyWithinByRule).toEqual({
      "noise.construction.laeq": 129_600_000,
    });
    expect(config.tickMs).toBe(15_000);
  });

  it("names every problem", () => {
    const result = TasksConfig.safeParse({
      tickMs: "soon",
      webhooks: [
        { name: "City Platform", url: "not a url", secret: "short" },
        { name: "ftp", url: "ftp://example.org/", secret: "0123456789abcdef" },
      ],
      responsibilities: [{ match: { kinds: ["fire"] } }],
    });
    expect(result.success).toBe(false);
    const problems = result.success
      ? []
      : problemsOf(result.error).map((p) => `${p.path}: ${p.message}`);
    expect(problems).toEqual(
      expect.arrayContaining([
        'tickMs: must be milliseconds or a duration like "72h", "30m", "1d"',
        "webhooks.0.name: a webhook name must be 1-32 characters of a-z 0-9 _ - (e.g. city-platform)",
        "webhooks.0.url: must be an http:// or https:// URL",
        "webhooks.0.secret: a webhook secret must be at least 16 characters",
        "webhooks.1.url: must be an http:// or https:// URL",
        expect.stringMatching(/^responsibilities\.0\.department: /),
        expect.stringMatching(/^responsibilities\.0\.match\.kinds\.0: /),
      ]) as unknown,
    );
  });
});
