import type { Responsibility, TasksConfig } from "../contracts/config/tasks.js";
import type { Site } from "../contracts/model/registry.js";
import type { TaskRouting } from "../contracts/model/tasks.js";
import type { TaskKind } from "../contracts/model/topics.js";

/*
 * Routing: the responsible department from the responsibility list (first matching line wins),
 * the grid team from the site's grid cell (grid management: every cell has a team that works
 * it). Pure.
 */

export interface RoutingInput {
  readonly kind: TaskKind;
  readonly ruleId: string;
  readonly site: Site | undefined;
}

function matches(line: Responsibility, input: RoutingInput): boolean {
  const m = line.match;
  const domain = input.ruleId.split(".")[0] ?? input.ruleId;
  if (m.kinds !== undefined && !m.kinds.includes(input.kind)) return false;
  if (m.rulePrefixes !== undefined && !m.rulePrefixes.some((p) => input.ruleId.startsWith(p))) {
    return false;
  }
  if (m.domains !== undefined && !m.domains.includes(domain)) return false;
  // A line restricted to districts or site types cannot match a task without a site.
  if (m.districts !== undefined && !m.districts.includes(input.site?.area.district ?? "")) {
    return false;
  }
  if (m.siteTypes !== undefined && !m.siteTypes.includes(input.site?.type ?? "")) return false;
  return true;
}

/** Department and team of a task. */
export function routeTask(
  config: Pick<
    TasksConfig,
    "responsibilities" | "gridTeams" | "defaultDepartment" | "environmentalDepartment"
  >,
  input: RoutingInput,
): TaskRouting {
  const index = config.responsibilities.findIndex((line) => matches(line, input));
  const line = config.responsibilities[index];
  const area = input.site?.area;
  const gridTeam =
    area === undefined ? undefined : (config.gridTeams[area.gridCell] ?? `grid ${area.gridCell}`);
  const fallback =
    input.kind === "environmental" ? config.environmentalDepartment : config.defaultDepartment;
  return {
    department: line?.department ?? fallback,
    team: line?.team ?? gridTeam ?? line?.department ?? fallback,
    ...(area === undefined
      ? {}
      : {
          district: area.district,
          ...(area.street === undefined ? {} : { street: area.street }),
          gridCell: area.gridCell,
        }),
    rule: line === undefined ? null : index,
  };
}
