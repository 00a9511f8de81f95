# prefs: common tasks. `make run` starts the service on embedded SQLite; `make test` runs everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

# The tests' PostgreSQL speaks TLS only (`hostssl`), and they connect with sslmode=verify-full.
PG_TLS := PREFS_PG_TLS=1

.PHONY: help run build release test test-rust test-pgbouncer e2e-deps test-smoke test-api-fuzz test-generated-client test-docs test-edx-frontend test-reliability fuzz lint fmt pg-start pg-stop doc

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-17s %s\n", $$1, $$2}'

run: ## Build and start `prefs serve --dev` on sqlite://prefs.db (prints demo tokens)
	$(CARGO) run --release --bin prefs -- serve --dev

build: ## Debug build of the workspace
	$(CARGO) build --workspace

release: ## Release build of the binary
	$(CARGO) build --release --bin prefs

test: lint ## The whole suite: lint, cargo tests, then the release binary black-box, on SQLite and a throwaway PostgreSQL
	$(MAKE) test-rust
	$(MAKE) test-pgbouncer
	$(MAKE) test-smoke
	$(MAKE) test-api-fuzz
	$(MAKE) test-generated-client
	$(MAKE) test-docs
	$(MAKE) test-edx-frontend
	$(MAKE) test-reliability
	$(MAKE) fuzz

test-rust: ## cargo test on both backends (starts the throwaway PostgreSQL, TLS only)
	PREFS_TEST_POSTGRES_URL="$$($(PG_TLS) tests/postgres.sh start | tail -n 1)" $(CARGO) test --workspace --all-features

test-pgbouncer: ## The PostgreSQL contract and HTTP tests again, through PgBouncer in transaction mode (PREFS_PG_PREPARED_STATEMENTS=false)
	export $(PG_TLS) PREFS_PG_PREPARED_STATEMENTS=false \
		PREFS_TEST_POSTGRES_URL="$$($(PG_TLS) tests/postgres.sh start | tail -n 1)" \
		PREFS_TEST_POSTGRES_POOLED_URL="$$($(PG_TLS) tests/pgbouncer.sh start | tail -n 1)" && \
	$(CARGO) test --all-features -p prefs-storage --test contract postgres && \
	$(CARGO) test --all-features -p prefs --test api postgres

e2e-deps: ## Python packages of the black-box tests and the lint (requests, PyJWT, schemathesis, playwright, openapi-spec-validator, openapi-python-client)
	python3 -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt

test-smoke: release e2e-deps ## The release binary through all three dialects and the CLI, from Python
	python3 tests/e2e/smoke.py target/release/prefs "$$($(PG_TLS) tests/postgres.sh start | tail -n 1)"

test-api-fuzz: release e2e-deps ## schemathesis against the served OpenAPI document: no 5xx, no answer off the document
	cd tests/e2e && python3 api_fuzz.py ../../target/release/prefs "$$($(PG_TLS) ../postgres.sh start | tail -n 1)"

test-generated-client: release e2e-deps ## A Python client generated from openapi/openapi.json (openapi-python-client) through every operation
	cd tests/e2e && python3 generated_client.py ../../target/release/prefs ../../openapi/openapi.json

test-docs: release e2e-deps ## Swagger UI at /docs/ in headless Chromium (Debian's): no failed or outside request, every operation, Try it out
	test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	python3 tests/e2e/docs_ui.py target/release/prefs /usr/bin/chromium /tmp/docs.png

test-edx-frontend: release e2e-deps ## An Open edX micro-frontend (@edx/frontend-platform, bundled by esbuild) in headless Chromium: JWT cookies, CSRF, CORS
	test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	command -v npm >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm; }
	cd tests/e2e/edx_frontend && npm ci --no-audit --no-fund && npm run build
	python3 tests/e2e/edx_frontend.py target/release/prefs /usr/bin/chromium

test-reliability: release e2e-deps ## Crash, outage, lost updates, two instances, failover, slow clients, SIGTERM, a damaged file, the hostile soak (own TLS-only PostgreSQL on 25442)
	$(PG_TLS) python3 tests/e2e/reliability.py target/release/prefs

FUZZ_SECONDS ?= 20
fuzz: ## libFuzzer on the request body path (bytes, JSON, Open edX rules, merge plans) for FUZZ_SECONDS (20)
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && $(CARGO) fuzz run --sanitizer none request_body -- -max_total_time=$(FUZZ_SECONDS)

lint: e2e-deps ## No reference outside the repository (tests/self_contained.sh), a valid OpenAPI document, rustfmt, clippy and rustdoc, warnings are errors
	tests/self_contained.sh
	python3 -m openapi_spec_validator openapi/openapi.json
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --all-features

fmt: ## Format the code
	$(CARGO) fmt --all

pg-start: ## Start the throwaway PostgreSQL used by the tests; prints its URL
	$(PG_TLS) tests/postgres.sh start

pg-stop: ## Stop and remove it
	$(PG_TLS) tests/postgres.sh stop

doc: ## API docs of the crates
	$(CARGO) doc --workspace --no-deps --open

.PHONY: bench
bench: ## Benchmarks vs the framework ceiling and the storage engine, SQLite and PostgreSQL (see BENCHMARKS.md)
	bench/run.sh
