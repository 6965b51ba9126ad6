import { describe, expect, it } from "vitest";
import { localDate, resolveRelativeDates } from "../../../../contracts/index.js";

describe("relative dates in registry files", () => {
  it("resolves {{today ± n d|mo|y}} anywhere in a string, everywhere in the file", () => {
    const resolved = resolveRelativeDates(
      {
        devices: [{ calibratedOn: "{{today}}", calibrationDueOn: "{{ today + 1y }}", n: 3 }],
        permit: { validFrom: "{{today-14d}}T22:00:00+08:00", validTo: "{{today + 6mo}}" },
        name: "no expression here",
      },
      "2026-12-05",
    );
    expect(resolved).toEqual({
      value: {
        devices: [{ calibratedOn: "2026-12-05", calibrationDueOn: "2027-12-05", n: 3 }],
        permit: { validFrom: "2026-11-21T22:00:00+08:00", validTo: "2027-06-05" },
        name: "no expression here",
      },
      problems: [],
    });
  });

  it("keeps the day of the month, clamped to the month's end, across years", () => {
    const at = (expression: string, today: string) => resolveRelativeDates(expression, today).value;
    expect(at("{{today + 1mo}}", "2025-01-31")).toBe("2025-02-28");
    expect(at("{{today + 1y}}", "2024-02-29")).toBe("2025-02-28");
    expect(at("{{today - 13mo}}", "2026-01-15")).toBe("2024-12-15");
    expect(at("{{today + 30d}}", "2026-12-05")).toBe("2027-01-04");
  });

  it("names an expression it does not know by its path", () => {
    expect(resolveRelativeDates({ a: [{ b: "{{tomorrow}}" }] }, "2026-12-05").problems).toEqual([
      {
        path: "a.0.b",
        message:
          "{{tomorrow}} is not a relative date; write {{today}}, {{today + 30d}}, {{today - 6mo}} or {{today + 1y}}",
      },
    ]);
  });

  it("today is the calendar date on this machine's clock", () => {
    const noon = new Date(2026, 11, 5, 12, 0, 0).getTime();
    expect(localDate(noon)).toBe("2026-12-05");
  });
});
