# citywatch all-in-one image. Build: docker build -t citywatch .
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY contracts ./contracts
COPY broker ./broker
COPY registry ./registry
COPY ingest ./ingest
COPY cli ./cli
COPY simulators ./simulators
COPY bin ./bin
COPY tsconfig.json ./

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=build /app /app
ENV CITYWATCH_DATA_DIR=/data \
    CITYWATCH_BROKER_HOST=0.0.0.0 \
    CITYWATCH_HTTP_HOST=0.0.0.0
VOLUME /data
EXPOSE 18830 18831 18832 18080
HEALTHCHECK --interval=15s --timeout=3s CMD node -e "fetch('http://127.0.0.1:18080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "--import", "tsx", "cli/citywatch.ts"]
CMD ["start"]
