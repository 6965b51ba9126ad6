import type { TaskEvent } from "../../contracts/model/tasks.js";
import { taskTopic } from "../../contracts/model/topics.js";
import type { OutboxTarget } from "./outbox.js";

/** Publishes a payload and resolves when the broker acknowledged it (QoS 1). */
export type Publisher = (topic: string, payload: string) => Promise<void>;

/**
 * The MQTT task topics as an outbox target: each event goes to `citywatch/v1/tasks/{kind}/{id}`
 * (contracts/model/topics.ts). Through the outbox, so a broker outage delays events and loses none.
 */
export function mqttTarget(publish: Publisher): OutboxTarget {
  return {
    name: "mqtt",
    deliver: (event: TaskEvent) =>
      publish(taskTopic(event.task.kind, event.task.id), JSON.stringify(event)),
  };
}
