import type { UserScope } from "../../contracts/model/people.js";
import type { Task } from "../../contracts/model/tasks.js";

/*
 * Scopes: a user acts on, and reads, the tasks routed to their districts, streets (街道) or grid
 * cells; admins, the command centre and service accounts are city-wide. A task routed nowhere (no
 * site) is city-wide work: only city-wide callers see it.
 */

/** Whether a task lies in a scope. */
export function inScope(scope: UserScope, task: Pick<Task, "routing">): boolean {
  if (scope.cityWide) return true;
  const r = task.routing;
  return (
    (r.district !== undefined && scope.districts.includes(r.district)) ||
    (r.street !== undefined && scope.streets.includes(r.street)) ||
    (r.gridCell !== undefined && scope.gridCells.includes(r.gridCell))
  );
}

/** The scope in words, for a 403's message. */
export function describeScope(scope: UserScope): string {
  if (scope.cityWide) return "city-wide";
  const parts = [
    scope.districts.length > 0 ? `districts ${scope.districts.join(", ")}` : "",
    scope.streets.length > 0 ? `streets ${scope.streets.join(", ")}` : "",
    scope.gridCells.length > 0 ? `grid cells ${scope.gridCells.join(", ")}` : "",
  ].filter((p) => p !== "");
  return parts.join("; ");
}
