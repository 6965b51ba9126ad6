import type {
  AuthOutcome,
  Device,
  DeviceInput,
  RegistryFile,
  ServiceAccount,
  Site,
} from "../contracts/index.js";
import type { Party } from "../contracts/model/registry.js";
import { sqliteTurns } from "../infra/sqlite-turns.js";
import type { InvalidRecord, Issued, RegistryStore, RemovedSite } from "./store.js";

/*
 * The registry behind an asynchronous interface (issue #21): one contract, two implementations,
 * one test suite run against both (tests/integration/registry/registry-store.test.ts).
 *
 * - `RegistryStore` (store.ts): the embedded `registry.db` on better-sqlite3, synchronous;
 *   `asyncRegistryStore` below puts it behind this interface unchanged.
 * - `PostgresRegistryStore` (store-postgres.ts): the same tables in PostgreSQL, shared by the nodes.
 *
 * The methods mean what RegistryStore's mean (see their doc comments there), with the same
 * validation and the same errors (a ZodError, a RegistryError), as rejections. What differs:
 * - `transaction(work)` takes the place of `hold()`: `hold()` opens a write transaction and
 *   returns commit/rollback to call later, which a pool of connections cannot offer without
 *   leaking one. `transaction` runs `work` with a view of the store whose every call takes part
 *   in it: all of it is durable when the promise resolves, or none of it when it rejects. A
 *   transaction begun inside another's `work` joins it. (`citywatch start` seeding the demo city
 *   inside a held transaction is `transaction(async (tx) => …)` here.)
 * - `view()` and `resolvedView()` give the same four lookups, answering with promises. Each
 *   lookup runs when called, on the store (or transaction view) it was taken from.
 * - `partyKey` stays synchronous: it reads nothing stored (the key is computed from the input).
 * - `file` (the SQLite file's path) is not part of it: PostgreSQL has none.
 */
export interface AsyncRegistryStore {
  transaction<T>(work: (tx: AsyncRegistryStore) => Promise<T>): Promise<T>;

  putSite(input: unknown): Promise<Site>;
  addSite(input: unknown, options?: { replace?: boolean }): Promise<Site>;
  devicesAt(siteId: string): Promise<Device[]>;
  removeSite(id: string, options?: { force?: boolean }): Promise<RemovedSite>;
  getSite(id: string): Promise<Site | undefined>;
  listSites(): Promise<Site[]>;

  addDevice(input: DeviceInput): Promise<Issued<Device>>;
  getDevice(id: string): Promise<Device | undefined>;
  listDevices(): Promise<Device[]>;
  countDevices(): Promise<number>;
  setDeviceEnabled(id: string, enabled: boolean): Promise<void>;
  putOnStandby(id: string): Promise<void>;
  removeDevice(id: string): Promise<void>;
  invalidRecords(): Promise<InvalidRecord[]>;

  rotateSecret(id: string): Promise<string>;
  addServiceAccount(input: unknown): Promise<Issued<ServiceAccount>>;
  listServiceAccounts(): Promise<ServiceAccount[]>;
  authenticate(username: string, secret: string): Promise<AuthOutcome>;

  importFile(file: RegistryFile): Promise<{
    devices: Issued<Device>[];
    serviceAccounts: Issued<ServiceAccount>[];
    kept: string[];
  }>;

  putParty(
    input: unknown,
    options?: { replace?: boolean; now?: number },
  ): Promise<{ party: Party; warnings: string[]; created: boolean }>;
  importParties(
    inputs: readonly unknown[],
    options?: { now?: number },
  ): Promise<{ created: Party[]; replaced: Party[]; warnings: string[] }>;
  getParty(key: string): Promise<Party | undefined>;
  listParties(): Promise<Party[]>;
  partyOfSite(siteId: string): Promise<Party | undefined>;
  resolvedSite(id: string): Promise<Site | undefined>;
  sitesOfParty(key: string): Promise<string[]>;
  partyKey(input: { readonly creditCode?: string | undefined; readonly name: string }): string;

  view(): AsyncRegistryView;
  resolvedView(): AsyncRegistryView;

  close(): Promise<void>;
}

/** The registry read-only (RegistryStore.view), answering with promises. */
export interface AsyncRegistryView {
  device(id: string): Promise<Device | undefined>;
  site(id: string): Promise<Site | undefined>;
  devices(): Promise<Device[]>;
  sites(): Promise<Site[]>;
}

/** The methods of AsyncRegistryStore that are RegistryStore's, awaited. */
type Forwarded = Exclude<
  keyof AsyncRegistryStore,
  "transaction" | "close" | "view" | "resolvedView" | "partyKey"
>;

/**
 * The embedded RegistryStore behind the asynchronous interface, its users taking turns
 * (infra/sqlite-turns.ts): a transaction's work runs inside the store's `hold()` (BEGIN
 * IMMEDIATE … COMMIT), the store's own transactions nesting in it as savepoints, and calls from
 * outside it wait until it ends.
 */
export function asyncRegistryStore(store: RegistryStore): AsyncRegistryStore {
  const turns = sqliteTurns(() => store.hold());
  const view = (inTx: boolean): AsyncRegistryStore => {
    const run = turns.run(inTx);
    const methods = turns.forward(store, FORWARDED, inTx) as unknown as Pick<
      AsyncRegistryStore,
      Forwarded
    >;
    /** A read-only view whose lookups go through this view's turn, like its methods. */
    const lookups = (of: () => ReturnType<RegistryStore["view"]>): AsyncRegistryView => ({
      device: (id) => run(() => of().device(id)),
      site: (id) => run(() => of().site(id)),
      devices: () => run(() => of().devices()),
      sites: () => run(() => of().sites()),
    });
    const self: AsyncRegistryStore = {
      ...methods,
      transaction: <T>(work: (tx: AsyncRegistryStore) => Promise<T>): Promise<T> =>
        inTx ? work(self) : turns.transaction(inside, work),
      partyKey: (input) => store.partyKey(input),
      view: () => lookups(() => store.view()),
      resolvedView: () => lookups(() => store.resolvedView()),
      close: () => turns.run(false)(() => store.close()),
    };
    return self;
  };
  const inside = view(true);
  return view(false);
}

/** Every forwarded method, checked against the interface by the compiler (none missing or extra). */
const FORWARDED_METHODS = {
  putSite: true,
  addSite: true,
  devicesAt: true,
  removeSite: true,
  getSite: true,
  listSites: true,
  addDevice: true,
  getDevice: true,
  listDevices: true,
  countDevices: true,
  setDeviceEnabled: true,
  putOnStandby: true,
  removeDevice: true,
  invalidRecords: true,
  rotateSecret: true,
  addServiceAccount: true,
  listServiceAccounts: true,
  authenticate: true,
  importFile: true,
  putParty: true,
  importParties: true,
  getParty: true,
  listParties: true,
  partyOfSite: true,
  resolvedSite: true,
  sitesOfParty: true,
} satisfies Record<Forwarded, true>;
const FORWARDED = Object.keys(FORWARDED_METHODS) as Forwarded[];
