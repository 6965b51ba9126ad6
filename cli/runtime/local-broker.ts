import type { Logger } from "pino";
import type { Broker } from "../../broker/app.js";
import type { LocalBroker } from "../../ingest/app.js";

/**
 * The embedded broker as the all-in-one ingest uses it: the ingest takes device data at the
 * broker's publish gate (written to its inbox before the broker acknowledges) and publishes
 * commits as the broker itself. No MQTT hop inside the process, no account to configure.
 */
export function localBroker(broker: Broker, log: Logger): LocalBroker {
  return {
    setPublishGate: (gate) => broker.setPublishGate(gate),
    publish: (topic, payload, options) =>
      new Promise<void>((resolve, reject) =>
        broker.aedes.publish(
          {
            cmd: "publish",
            topic,
            payload: Buffer.from(payload),
            qos: options.qos,
            retain: options.retain,
            dup: false,
          },
          (error) => {
            if (!error) return resolve();
            log.warn({ err: error.message, topic }, "in-process publish failed");
            reject(error);
          },
        ),
      ),
  };
}
