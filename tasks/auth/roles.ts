import type { ApiRole } from "../../contracts/model/tasks.js";
import type { TaskKind } from "../../contracts/model/topics.js";
import { ACTS_ON } from "../../contracts/model/task-rules.js";

/*
 * What each role may do with tasks. Every role reads every task (a coordinator must see the whole
 * picture); acting — transitions — is limited to the role's own kind of work:
 *   admin and command_centre: everything · enforcement: enforcement cases · emergency:
 *   emergency tasks · operator: maintenance tasks · legal_reviewer: reviews (no task transitions
 *   of its own) · viewer: nothing.
 * A user with several roles acts on the union of their kinds; a user acts only within their scope
 * (scope.ts).
 */

/** Whether a role may change tasks of a kind. */
export const mayAct = (role: ApiRole, kind: TaskKind): boolean => ACTS_ON[role].includes(kind);

/** Whether a role may read tasks, the stream and evidence: all roles may. */
export const mayRead = (_role: ApiRole): boolean => true;

/** The kinds a role acts on, for error messages. */
export const kindsOf = (role: ApiRole): readonly TaskKind[] => ACTS_ON[role];
