#!/bin/sh
# InfluxDB 2.x init script (run once by the influxdb image after its initial setup, from
# /docker-entrypoint-initdb.d): map the InfluxQL database citywatch/autogen to the bucket, so the
# ingest's queries and Grafana's InfluxQL datasource find the data (docs/data-model.md 6.2, 10.3).
set -eu
bucket_id=$(influx bucket list --name "$DOCKER_INFLUXDB_INIT_BUCKET" --hide-headers | cut -f1)
influx v1 dbrp create \
  --db "$DOCKER_INFLUXDB_INIT_BUCKET" \
  --rp autogen \
  --bucket-id "$bucket_id" \
  --default
