// Entry point for suites that need real services. Each provider tries, in order: the
// CITYWATCH_TEST_*_URL variable, testcontainers (only when a Docker engine answers), a local
// binary on a free loopback port; otherwise it reports why the service is unavailable.
// A new service is one ServiceSpec passed to provide(), in a file of its own. PostgreSQL is the
// exception: tests share the machine's server, each in a schema of its own (postgres.ts).
export { provideInfluxDB } from "./influxdb.js";
export { provideMosquitto, mqttConnack } from "./mosquitto.js";
export {
  countQueries,
  createLeasedSchema,
  createMigratedSchema,
  createTestSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "./postgres.js";
export { provideRedis, redisCommands, type RespValue } from "./redis.js";
export { canConnect, freePort } from "./ports.js";
export {
  provide,
  type Provided,
  type ServiceHandle,
  type ServiceSource,
  type ServiceSpec,
} from "./provide.js";
