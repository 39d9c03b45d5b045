# Addresses of the local services. Source it:  . deploy/local/env.sh
# Sourced into the caller's shell, so no `set -e` here: it would change the caller's shell options.
# Ports and the state dir keep any value the caller already set; the URLs always follow the ports.
# shellcheck shell=bash

export KAFKA_PORT="${KAFKA_PORT:-19092}"
export KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
export PG_PORT="${PG_PORT:-15432}"
export REDIS_PORT="${REDIS_PORT:-16379}"
export ALERTMANAGER_PORT="${ALERTMANAGER_PORT:-19094}"
# Where the local Alertmanager sends its webhooks: a port the integration tests listen on.
export ALERTMANAGER_WEBHOOK_PORT="${ALERTMANAGER_WEBHOOK_PORT:-19095}"
# Prometheus in agent mode (deploy/local/prometheus.sh) and the exporters it scrapes (exporters.sh).
export PROMETHEUS_PORT="${PROMETHEUS_PORT:-19090}"
export NODE_EXPORTER_PORT="${NODE_EXPORTER_PORT:-19100}"
export PG_EXPORTER_PORT="${PG_EXPORTER_PORT:-19187}"
# Apicurio Registry (deploy/local/apicurio.sh): its HTTP API and its management port (health, metrics).
export APICURIO_PORT="${APICURIO_PORT:-18081}"
export APICURIO_MANAGEMENT_PORT="${APICURIO_MANAGEMENT_PORT:-19001}"
# Outside the repo on purpose: postgres runs as the `postgres` user, which cannot enter /root (mode 700).
export GDS_STATE_DIR="${GDS_STATE_DIR:-/tmp/gds-local}"

export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${KAFKA_PORT}"
export PG_DSN="postgresql://gds@127.0.0.1:${PG_PORT}/gds"
export REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"
export ALERTMANAGER_URL="http://127.0.0.1:${ALERTMANAGER_PORT}"
# Apicurio's Confluent-compatible API: what confluent-kafka's SchemaRegistryClient talks to.
export SCHEMA_REGISTRY_URL="http://127.0.0.1:${APICURIO_PORT}/apis/ccompat/v7"
