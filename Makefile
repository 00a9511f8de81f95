# prefs: common tasks. `make run` starts the service on embedded SQLite; `make test` runs everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help run build release test test-rust e2e-deps test-smoke test-api-fuzz test-docs test-reliability fuzz lint fmt pg-start pg-stop doc

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
	$(MAKE) test-smoke
	$(MAKE) test-api-fuzz
	$(MAKE) test-docs
	$(MAKE) test-reliability
	$(MAKE) fuzz

test-rust: ## cargo test on both backends (starts the throwaway PostgreSQL)
	PREFS_TEST_POSTGRES_URL="$$(tests/postgres.sh start | tail -n 1)" $(CARGO) test --workspace --all-features

e2e-deps: ## Python packages of the black-box tests (requests, PyJWT, schemathesis, playwright)
	python3 -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt

test-smoke: release e2e-deps ## The release binary through all three dialects and the CLI, from Python
	python3 tests/e2e/smoke.py target/release/prefs "$$(tests/postgres.sh start | tail -n 1)"

test-api-fuzz: release e2e-deps ## schemathesis against the served OpenAPI document: no 5xx, no answer off the document
	cd tests/e2e && python3 api_fuzz.py ../../target/release/prefs "$$(../postgres.sh start | tail -n 1)"

test-docs: release e2e-deps ## Swagger UI at /docs/ in headless Chromium (Debian's): no failed or outside request, every operation, Try it out
	test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	python3 tests/e2e/docs_ui.py target/release/prefs /usr/bin/chromium /tmp/docs.png

test-reliability: release e2e-deps ## Crash, outage, lost updates, two instances, slow clients, SIGTERM (own PostgreSQL on 55442)
	python3 tests/e2e/reliability.py target/release/prefs

FUZZ_SECONDS ?= 20
fuzz: ## libFuzzer on the request body path (bytes, JSON, Open edX rules, merge plans) for FUZZ_SECONDS (20)
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && $(CARGO) fuzz run --sanitizer none request_body -- -max_total_time=$(FUZZ_SECONDS)

lint: ## rustfmt, clippy and rustdoc, warnings are errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --all-features

fmt: ## Format the code
	$(CARGO) fmt --all

pg-start: ## Start the throwaway PostgreSQL used by the tests; prints its URL
	tests/postgres.sh start

pg-stop: ## Stop and remove it
	tests/postgres.sh stop

doc: ## API docs of the crates
	$(CARGO) doc --workspace --no-deps --open

.PHONY: bench
bench: ## Benchmarks vs the framework ceiling and the storage engine, SQLite and PostgreSQL (see BENCHMARKS.md)
	bench/run.sh
