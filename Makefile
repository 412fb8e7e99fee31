# payhook developer commands. `make run` and `make test` are the two you need.
SHELL := bash
CARGO ?= cargo

# Postgres server the end-to-end tests create their throw-away databases on.
PAYHOOK_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
export PAYHOOK_TEST_DATABASE_URL
# Shared example payloads (public docs and SDK test data), beside the repository.
PAYHOOK_FIXTURES_DIR ?= $(CURDIR)/../shared/fixtures
export PAYHOOK_FIXTURES_DIR
# Database for `make run` until the embedded store lands.
RUN_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/payhook_dev

.PHONY: run test conformance fmt lint migrate check-postgres

## run: start payhook on 127.0.0.1:8080 (creates and migrates the dev database first)
run: check-postgres
	@psql "$(PAYHOOK_TEST_DATABASE_URL)" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$(notdir $(RUN_DATABASE_URL))'" | grep -q 1 \
	  || psql "$(PAYHOOK_TEST_DATABASE_URL)" -qc 'CREATE DATABASE "$(notdir $(RUN_DATABASE_URL))"'
	PAYHOOK__DATABASE__URL="$(RUN_DATABASE_URL)" $(CARGO) run -p payhook-app --bin payhook -- migrate
	PAYHOOK__DATABASE__URL="$(RUN_DATABASE_URL)" $(CARGO) run -p payhook-app --bin payhook -- serve

## test: every unit, store and end-to-end test (needs Postgres at PAYHOOK_TEST_DATABASE_URL)
test: check-postgres
	$(CARGO) test --workspace --locked

## conformance: check the adapters against the public example payloads in ../shared/fixtures
conformance:
	@test -d "$(PAYHOOK_FIXTURES_DIR)" || { echo "make conformance: no fixtures at $(PAYHOOK_FIXTURES_DIR)" >&2; exit 1; }
	$(CARGO) test --workspace --locked --test conformance -- --ignored

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## migrate: apply migrations to database.url (from config / PAYHOOK__DATABASE__URL)
migrate:
	$(CARGO) run -p payhook-app --bin payhook -- migrate

# Fails fast, with one clear line, when the test Postgres is not reachable.
check-postgres:
	@hostport=$$(sed -E 's#^[a-z]+://([^@/]*@)?([^/:?]+)(:([0-9]+))?.*#\2 \4#' <<< "$(PAYHOOK_TEST_DATABASE_URL)"); \
	set -- $$hostport; host=$$1; port=$${2:-5432}; \
	if ! (exec 3<>"/dev/tcp/$$host/$$port") 2>/dev/null; then \
	  echo "Postgres is not reachable at $$host:$$port (PAYHOOK_TEST_DATABASE_URL=$(PAYHOOK_TEST_DATABASE_URL)); start it or point the variable at one." >&2; \
	  exit 1; \
	fi
