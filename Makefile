# payhook developer commands. `make run` and `make test` are the two you need.
SHELL := bash
CARGO ?= cargo

# Postgres server the Postgres half of the tests creates throw-away databases on.
PAYHOOK_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
export PAYHOOK_TEST_DATABASE_URL
# 1: an unreachable Postgres fails `make test` instead of skipping its half (CI sets it).
PAYHOOK_REQUIRE_POSTGRES ?= 0
export PAYHOOK_REQUIRE_POSTGRES
# Shared example payloads (public docs and SDK test data), beside the repository.
PAYHOOK_FIXTURES_DIR ?= $(CURDIR)/../shared/fixtures
export PAYHOOK_FIXTURES_DIR

.PHONY: run test conformance demo bench fmt lint migrate stores

## run: payhook on 127.0.0.1:8080 with the embedded store in ./data (config/dev.toml)
run:
	@echo "merchant API key (config/dev.toml, development only): dev_merchant_key_local_only"
	$(CARGO) run -p payhook-app --bin payhook -- --config config/dev.toml serve

## test: every test on SQLite, and on Postgres when it is reachable (or required)
test: stores
	$(CARGO) test --workspace --locked
	@$(MAKE) -s stores

## conformance: check the adapters against the public example payloads in ../shared/fixtures
conformance:
	@test -d "$(PAYHOOK_FIXTURES_DIR)" || { echo "make conformance: no fixtures at $(PAYHOOK_FIXTURES_DIR)" >&2; exit 1; }
	$(CARGO) test --workspace --locked -- --ignored

## demo: payhook and the four fake providers; one payment per provider through its lifecycle
demo:
	$(CARGO) build --locked -p payhook-app --bin payhook -p payhook-testkit --bin payhook-fakes
	timeout 300 scripts/demo.sh "$${CARGO_TARGET_DIR:-target}/debug/payhook" "$${CARGO_TARGET_DIR:-target}/debug/payhook-fakes"

## bench: micro-benchmarks, the pgbench floor, payhook under payhook-loadgen on Postgres
## and SQLite (release build; a few minutes; numbers in docs/performance.md)
bench:
	bench/run.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## migrate: apply migrations to database.url (from config / PAYHOOK__DATABASE__URL)
migrate:
	$(CARGO) run -p payhook-app --bin payhook -- migrate

# Says which stores the tests run against; fails when Postgres is required but unreachable.
stores:
	@hostport=$$(sed -E 's#^[a-z]+://([^@/]*@)?([^/:?]+)(:([0-9]+))?.*#\2 \4#' <<< "$(PAYHOOK_TEST_DATABASE_URL)"); \
	set -- $$hostport; host=$$1; port=$${2:-5432}; \
	if (exec 3<>"/dev/tcp/$$host/$$port") 2>/dev/null; then \
	  echo "stores tested: sqlite, postgres ($$host:$$port)"; \
	elif [ "$(PAYHOOK_REQUIRE_POSTGRES)" = 1 ]; then \
	  echo "Postgres is required (PAYHOOK_REQUIRE_POSTGRES=1) but not reachable at $$host:$$port; start it or set PAYHOOK_TEST_DATABASE_URL." >&2; \
	  exit 1; \
	else \
	  echo "stores tested: sqlite only; Postgres at $$host:$$port is unreachable, so its half is SKIPPED (PAYHOOK_REQUIRE_POSTGRES=1 fails instead)"; \
	fi
