# citywatch image: the CLI and every component, run through tsx as from a checkout (no build step
# to drift but the console's, built by npm ci as on a checkout). One image serves every role in docker-compose.yml: `start` (broker, ingest, API),
# `sim` (the simulator), `broker`, `ingest`, `edge`, `dashboards`.
#   docker build -t citywatch .
#   docker run --rm -p 18830:18830 -p 18080:18080 -v citywatch-data:/data citywatch start
FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 falls back to compiling when no prebuilt binary matches.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.json ./
COPY bin ./bin
COPY contracts ./contracts
COPY infra ./infra
COPY cluster ./cluster
COPY broker ./broker
COPY registry ./registry
COPY ingest ./ingest
COPY rules ./rules
COPY tasks ./tasks
COPY edge ./edge
COPY simulators ./simulators
COPY dashboards ./dashboards
COPY console ./console
COPY cli ./cli
# With the dev dependencies, npm ci's prepare script builds the operators' console into
# console/dist (Vite); then they are dropped, and the image serves the built console.
RUN npm ci && npm prune --omit=dev && npm cache clean --force

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=build /app /app
# Listen on every interface inside the container; the data directory is the /data volume.
ENV NODE_ENV=production \
    CITYWATCH_DATA_DIR=/data \
    CITYWATCH_BROKER_HOST=0.0.0.0 \
    CITYWATCH_HTTP_HOST=0.0.0.0
# /keys: the evidence keys the nodes of a cluster share (docker-compose.yml, profile cluster).
RUN mkdir -p /data /keys && chown node:node /data /keys
USER node
VOLUME /data
# MQTT, MQTT/TLS, MQTT over WebSocket, HTTP (API, /metrics, /healthz).
EXPOSE 18830 18831 18832 18080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.CITYWATCH_HTTP_PORT||18080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# The same 64 MiB young generation as npm start and bin/citywatch.js (the ingest allocates
# short-lived objects for every reading).
ENTRYPOINT ["node", "--max-semi-space-size=64", "--import", "tsx", "cli/citywatch.ts"]
CMD ["start"]
