# prefs: common tasks. `make run` starts the service on embedded SQLite; `make test` runs everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help run build release test test-rust test-e2e lint fmt pg-start pg-stop doc

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## Build and start `prefs serve --dev` on sqlite://prefs.db (prints demo tokens)
	$(CARGO) run --release --bin prefs -- serve --dev

build: ## Debug build of the workspace
	$(CARGO) build --workspace

release: ## Release build of the binary
	$(CARGO) build --release --bin prefs

test: lint ## The whole suite: lint, cargo tests and the end-to-end check, on SQLite and a throwaway PostgreSQL
	$(MAKE) test-rust
	$(MAKE) test-e2e

test-rust: ## cargo test on both backends (starts the throwaway PostgreSQL)
	PREFS_TEST_POSTGRES_URL="$$(tests/postgres.sh start | tail -n 1)" $(CARGO) test --workspace --all-features

test-e2e: release ## The release binary, black-box, from Python (requests + PyJWT)
	python3 -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
	python3 tests/e2e/smoke.py target/release/prefs "$$(tests/postgres.sh start | tail -n 1)"

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
