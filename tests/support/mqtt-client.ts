import mqtt, { type IClientOptions, type MqttClient } from "mqtt";

/**
 * A real MQTT.js client on 127.0.0.1:`port` as `username` (client id defaults to it), resolved on
 * CONNACK, rejected on a refused CONNECT. No reconnects: a test sees every disconnect.
 */
export function connectMqtt(
  port: number,
  username: string,
  password: string,
  clientId = username,
  options: IClientOptions = {},
): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      username,
      password,
      clientId,
      reconnectPeriod: 0,
      protocolVersion: 4,
      ...options,
    });
    client.once("connect", () => resolve(client));
    client.once("error", (error) => {
      client.end(true);
      reject(error);
    });
  });
}
