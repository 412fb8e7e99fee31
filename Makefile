# payhook developer commands. `make run` and `make test` are the two you need.
SHELL := bash
CARGO ?= cargo

# Postgres server the Postgres half of the tests creates throw-away databases on.
PAYHOOK_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
export PAYHOOK_TEST_DATABASE_URL
# 1: an unreachable Postgres fails `make test` instead of skipping its half (CI sets it).
PAYHOOK_REQUIRE_POSTGRES ?= 0
export PAYHOOK_REQUIRE_POSTGRES
# The providers' published example payloads (their docs' and SDKs' test data), which
# `make conformance` checks the adapters against. They are not part of this
# repository; point PAYHOOK_FIXTURES_DIR at a copy (one directory per provider).
PAYHOOK_FIXTURES_DIR ?= $(CURDIR)/../shared/fixtures
# 1: missing fixtures fail `make conformance` instead of skipping it (CI sets it).
PAYHOOK_REQUIRE_FIXTURES ?= 0
export PAYHOOK_FIXTURES_DIR

.PHONY: run test readme conformance demo bench fuzz fmt lint migrate stores

## run: payhook on 127.0.0.1:8080 (config/dev.toml, embedded store in ./data) and the
## four fake provider APIs it is set up against; Ctrl-C stops them all
run:
	$(CARGO) build -p payhook-app --bin payhook
	$(CARGO) build -p payhook-testkit --bin payhook-fakes
	scripts/run.sh "$${CARGO_TARGET_DIR:-target}/debug/payhook" "$${CARGO_TARGET_DIR:-target}/debug/payhook-fakes"

## test: every test on SQLite, and on Postgres when it is reachable (or required)
test: stores
	$(CARGO) test --workspace --locked
	@$(MAKE) -s stores

## conformance: check the adapters against the providers' published example payloads
## in PAYHOOK_FIXTURES_DIR (skipped when absent, unless PAYHOOK_REQUIRE_FIXTURES=1)
conformance:
	@if [ ! -d "$(PAYHOOK_FIXTURES_DIR)" ]; then \
	  echo "make conformance: skipped: no fixtures at $(PAYHOOK_FIXTURES_DIR)."; \
	  echo "  It needs the providers' published example payloads, one directory per provider"; \
	  echo "  (stripe/, xendit/, qpay/, junglepay/): set PAYHOOK_FIXTURES_DIR to where they are."; \
	  test "$(PAYHOOK_REQUIRE_FIXTURES)" != 1 || { echo "PAYHOOK_REQUIRE_FIXTURES=1: failing" >&2; exit 1; }; \
	else \
	  $(CARGO) test --workspace --locked -- --ignored; \
	fi

## readme: run the README's "Try it" commands against `make run` and check their answers
readme:
	scripts/readme-test

## demo: payhook and the four fake providers; one payment per provider through its lifecycle
demo:
	$(CARGO) build --locked -p payhook-app --bin payhook -p payhook-testkit --bin payhook-fakes
	timeout 300 scripts/demo.sh "$${CARGO_TARGET_DIR:-target}/debug/payhook" "$${CARGO_TARGET_DIR:-target}/debug/payhook-fakes"

## bench: micro-benchmarks, the pgbench floor, payhook under payhook-loadgen on Postgres
## and SQLite (release build; a few minutes; numbers in docs/performance.md)
bench:
	bench/run.sh

## fuzz: each target in fuzz/ for FUZZ_SECONDS (60) under cargo-fuzz on nightly Rust;
## crashes land in fuzz/artifacts/<target>/ (replay: cd fuzz && cargo +nightly fuzz run <target> <file>)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= provider_webhooks stripe_signature stripe_signature_window
fuzz:
	@command -v cargo-fuzz >/dev/null || { echo "make fuzz needs cargo-fuzz: cargo install cargo-fuzz" >&2; exit 1; }
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  env -u CARGO_TARGET_DIR cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 \
	    | grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==|SUMMARY|thread|.*panicked)' ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

fmt:
	$(CARGO) fmt --all

lint:
	scripts/check-rust-version
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
