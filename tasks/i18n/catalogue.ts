import type { en } from "./en.js";

/** The shape every catalogue has: the English one's keys, each a string. */
type Strings<T> = { readonly [K in keyof T]: T[K] extends string ? string : Strings<T[K]> };
export type Catalogue = Strings<typeof en>;
