import { existsSync } from "node:fs";
import http from "node:http";
import type * as TestcontainersModule from "testcontainers";

const DOCKER_SOCKET = "/var/run/docker.sock";
const PING_TIMEOUT_MS = 1_500;

let engineAnswers: Promise<boolean> | undefined;

/**
 * Whether testcontainers is worth trying. Its own discovery can take many seconds to give up
 * on a machine without Docker, so this answers from cheap evidence first, once per process.
 */
export function dockerEngineAnswers(): Promise<boolean> {
  engineAnswers ??= probeEngine();
  return engineAnswers;
}

async function probeEngine(): Promise<boolean> {
  // A configured DOCKER_HOST may be remote (tcp://, ssh://); testcontainers knows how to reach it.
  if ((process.env["DOCKER_HOST"] ?? "") !== "") return true;
  if (!existsSync(DOCKER_SOCKET)) return false;
  return pingSocket(DOCKER_SOCKET);
}

function pingSocket(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get(
      { socketPath, path: "/_ping", signal: AbortSignal.timeout(PING_TIMEOUT_MS) },
      (response) => {
        response.resume();
        resolve(response.statusCode === 200);
      },
    );
    request.once("error", () => resolve(false));
  });
}

export type Testcontainers = typeof TestcontainersModule;

/** Loaded lazily: importing testcontainers is slow and pointless without a Docker engine. */
export function loadTestcontainers(): Promise<Testcontainers> {
  return import("testcontainers");
}
