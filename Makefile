# Two commands for a newcomer: `make run` (the alerting job on the bundled sample) and
# `make test` (the whole suite against real local services). Everything else is optional.
.PHONY: run test lint services-up services-down bench api gateway protos

# `make run` also shows the routing: what each receiver of flows/sample/routes.yml would be sent
NOTIFY_ROUTES ?= flows/sample/routes.yml

run:
	@deploy/local/venv.sh
	NOTIFY_ROUTES=$(NOTIFY_ROUTES) .venv/bin/python -m bytewax.run flows.alerting

test:
	deploy/local/test.sh

lint:
	@deploy/local/venv.sh
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy .

services-up:
	@deploy/local/venv.sh
	deploy/local/services.sh up

services-down:
	deploy/local/services.sh down

# `make bench` prints one table of the run's figures (about 25 min); BENCH=quick: small sizes, a check
# that everything runs. Every JSON line is also appended to bench/results.jsonl.
BENCH ?= full
bench:
	@deploy/local/venv.sh
	BENCH=$(BENCH) bench/run.sh

# The control-plane API (and console) on the local services, http://127.0.0.1:9093 (docs/api.md).
# A write token for local use only (the API binds 127.0.0.1); set API_TOKENS to your own.
API_TOKENS ?= dev:write:local-dev-token-change-me
api:
	@deploy/local/venv.sh
	@. deploy/local/env.sh && API_TOKENS=$(API_TOKENS) .venv/bin/python -m connectors.api

# The metrics gateway (connectors/gateway) on the local services, http://127.0.0.1:$GATEWAY_PORT:
# POST /metrics, /metrics/batch, Prometheus remote_write /api/v1/write, OTLP /v1/metrics.
gateway:
	@deploy/local/venv.sh
	@. deploy/local/env.sh && .venv/bin/python -m connectors.gateway

# Prometheus' remote_write protobuf code (schemas/proto/prometheus) with grpcio-tools' protoc;
# the import is made absolute so the generated modules load as connectors.gateway.prometheus.
protos:
	.venv/bin/python -m pip install -q "grpcio-tools==1.85.1"  # its protoc makes protobuf 7.35 code
	.venv/bin/python -m grpc_tools.protoc -I schemas/proto --python_out=connectors/gateway \
		--pyi_out=connectors/gateway schemas/proto/prometheus/types.proto schemas/proto/prometheus/remote.proto
	sed -i 's/^from prometheus import/from connectors.gateway.prometheus import/' connectors/gateway/prometheus/*_pb2.py*
