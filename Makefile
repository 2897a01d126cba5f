# Tapeflow: `make demo` runs the platform on a local cluster, `make test` runs every test.
SHELL := /bin/bash
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
TAPEFLOW_HOME ?= $(CURDIR)/.tapeflow
export TAPEFLOW_HOME
EXT_SOURCES := $(shell find pg_extension analytics -name '*.rs' -o -name Cargo.toml -o -name '*.control' | grep -v target) Cargo.toml

.PHONY: demo test stop psql dburl deps extension binaries db lint bench fuzz

deps:
	@bash scripts/install-deps.sh

# Rebuilds and reinstalls the extension only when its sources changed.
$(TAPEFLOW_HOME)/extension.stamp: $(EXT_SOURCES)
	@echo "==> building and installing the tapeflow extension"
	@bash scripts/extension.sh install
	@mkdir -p $(TAPEFLOW_HOME) && touch $@

extension: deps $(TAPEFLOW_HOME)/extension.stamp

binaries: deps
	cargo build --release --bin tapeflow-feed --bin tapeflow-exec --bin tapeflow-web

db: extension
	@bash scripts/cluster.sh start
	@bash scripts/db-refresh-extension.sh
	@bash scripts/migrate.sh
	@bash scripts/db-refresh-extension.sh "$$(bash scripts/cluster.sh url)" --stamp

demo: db binaries
	@bash scripts/demo.sh start

stop:
	@bash scripts/demo.sh stop
	@bash scripts/cluster.sh stop

psql:
	@psql "$$(bash scripts/cluster.sh url)"

dburl:
	@bash scripts/cluster.sh url

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test: extension binaries
	@bash scripts/test.sh

bench: db
	@bash bench/run.sh

# A local Citus cluster (coordinator on 5440, workers on 5441-5442) when Citus is installed.
.PHONY: citus citus-stop
citus: extension
	@bash scripts/citus.sh start
	@bash scripts/migrate.sh "$$(bash scripts/citus.sh url)"
	@bash scripts/citus.sh announcer
citus-stop:
	@bash scripts/citus.sh stop

# Every fuzz target, 1,000,000 inputs each (FUZZ_CASES=n for another count); prints the count and time per target.
fuzz: ; TAPEFLOW_FUZZ_CASES=$${FUZZ_CASES:-1000000} cargo test --release -p tapeflow-analytics -p tapeflow-executor -p tapeflow-feeders --test fuzz_decoders --test fuzz_params --test fuzz_alpaca --test fuzz_import --test fuzz_alpaca_data --test fuzz_alphavantage --test fuzz_ig --test fuzz_polymarket -- --nocapture --test-threads=2
