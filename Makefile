# Two commands for a newcomer: `make run` (the alerting job on the bundled sample) and
# `make test` (the whole suite against real local services). Everything else is optional.
.PHONY: run test lint services-up services-down bench api

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

bench:
	@deploy/local/venv.sh
	bench/run.sh

# The control-plane API (and console) on the local services, http://127.0.0.1:9093 (docs/api.md).
# A write token for local use only (the API binds 127.0.0.1); set API_TOKENS to your own.
API_TOKENS ?= dev:write:local-dev-token-change-me
api:
	@deploy/local/venv.sh
	@. deploy/local/env.sh && API_TOKENS=$(API_TOKENS) .venv/bin/python -m connectors.api
