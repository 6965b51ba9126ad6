import { z } from "zod";
import { registryText } from "./registry.js";
import { ApiRole } from "./tasks.js";

/*
 * People: the user accounts of enforcement officers, emergency managers, operators, legal
 * reviewers and the command centre; their scope (where in the city they act) and their browser
 * sessions. docs/tasks.md, "People, roles and scopes".
 */

/** A user's login name: 2-32 characters of a-z 0-9 . _ - starting with a letter or digit. */
export const UserId = z.string().regex(/^[a-z0-9][a-z0-9._-]{1,31}$/, {
  error: "a user name must be 2-32 characters of a-z 0-9 . _ - starting with a letter or digit",
});
export type UserId = z.infer<typeof UserId>;

/**
 * Where a user acts: city-wide, or the tasks routed to these districts, streets (街道) or grid
 * cells. A task is in scope when any of its district, street or grid cell is listed.
 */
export const UserScope = z
  .strictObject({
    cityWide: z.boolean().default(false),
    districts: z.array(registryText(1, 64)).max(64).default([]),
    streets: z.array(registryText(1, 64)).max(256).default([]),
    gridCells: z.array(registryText(1, 64)).max(1_024).default([]),
  })
  .refine((s) => s.cityWide || s.districts.length + s.streets.length + s.gridCells.length > 0, {
    error: "a scope is city-wide or names at least one district, street or grid cell",
  });
export type UserScope = z.infer<typeof UserScope>;

export const CITY_WIDE: UserScope = { cityWide: true, districts: [], streets: [], gridCells: [] };

/** A user account as the API shows it (never its password hash). */
export const User = z.object({
  id: UserId,
  name: z.string(),
  /** Staff or enforcement badge number (执法证号), printed on documents the user signs. */
  badge: z.string().nullable(),
  roles: z.array(ApiRole).min(1),
  scope: UserScope,
  team: z.string().nullable(),
  disabled: z.boolean(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type User = z.infer<typeof User>;

/** A new user, or the changed fields of one. */
export const UserInput = z.strictObject({
  id: UserId,
  name: registryText(1, 100),
  badge: registryText(1, 32).optional(),
  roles: z
    .array(ApiRole)
    .min(1, { error: "a user needs at least one role" })
    .max(7)
    .refine((r) => new Set(r).size === r.length, { error: "roles must not repeat" }),
  scope: UserScope,
  team: registryText(1, 120).optional(),
});
export type UserInput = z.input<typeof UserInput>;

/** `POST /api/v1/session`. */
export const LoginRequest = z.strictObject({
  username: z.string().min(1, { error: "username is required" }).max(64),
  password: z.string().min(1, { error: "password is required" }).max(1_024),
});
export type LoginRequest = z.infer<typeof LoginRequest>;

/** The signed-in user and the CSRF token every changing request must send back. */
export const SessionInfo = z.object({
  user: User,
  /** Send as the `x-csrf-token` header on every POST, PUT, PATCH and DELETE with the cookie. */
  csrfToken: z.string(),
  expiresAt: z.string(),
});
export type SessionInfo = z.infer<typeof SessionInfo>;
