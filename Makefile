# Two entry points for a fresh Debian machine with only Python and apt:
#   make demo   - run the main job live on the example plan (examples/llama-8b-disagg.yaml);
#                 make demo SOURCE=vllm (or sglang) reads engine metrics instead of Dynamo's
#   make test   - run the whole test suite (what .ci/run calls)
# and, for the edit loop, make test-unit (tests/unit only: no Prometheus, no servers).
# Both create .venv and install what they need, Debian's prometheus package included.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# test brings helm-python-sdk: Helm v4's engine as a library, which renders charts/dynplan in
# tests/integration/test_helm_chart.py (no helm binary to download)
EXTRAS ?= test,arima,prophet,plot
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: demo test test-unit venv prometheus bench clean proto

# Debian ships venv's ensurepip separately (python3-venv); install it when venv fails.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null && \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip uv

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python -e ".[$(EXTRAS)]"
	touch $@

venv: $(STAMP)

# promtool and prometheus come from Debian's package; install it when missing.
prometheus:
	@command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# SOURCE=vllm|sglang: the fake frontend exports engine pods' series instead of Dynamo's
SOURCE ?= dynamo
demo: venv prometheus
	$(BIN)/python -m scaler.devtools.demo --source $(SOURCE)

# Two workers (pytest-xdist): most integration tests wait on servers and subprocesses, so two
# processes on two cores cut the suite from ~7.5 to ~5.5 minutes (both measured on a clean clone).
test: venv prometheus
	$(BIN)/python -m pytest -q -n 2 $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m bench.run_all

proto: venv
	$(BIN)/python -m scaler.proto.regenerate

clean:
	rm -rf $(VENV) build dist .pytest_cache
