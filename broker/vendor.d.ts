// aedes-persistence-redis ships no types; this is the part citywatch uses.
declare module "aedes-persistence-redis" {
  import type { Redis } from "ioredis";
  interface RedisPersistenceOptions {
    conn?: Redis;
    maxSessionDelivery?: number;
    packetTTL?: (packet: unknown) => number;
  }
  function aedesPersistenceRedis(options?: RedisPersistenceOptions): unknown;
  export default aedesPersistenceRedis;
}
