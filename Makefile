# Two commands set up a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

# llama-cpp-python has no wheel on the registry, so it is compiled here. A native build
# (-march=native) can crash on another CPU, and 0.3.36 built natively crashes on CPUs with
# AMX. So the CPU backend is built in each x86-64 variant (AVX2 up to AVX-512 and AMX) and
# the process loads the best one this CPU runs (providers/local/llama_backends.py): one
# wheel runs on every x86-64 CPU with AVX2, at the speed of the one it meets. pip's own
# wheel cache ignores CMAKE_ARGS (it would hand back a native build made earlier), so the
# wheel is built once into a folder named after its version and flags.
# See docs/models.md, "The LLM engine on every CPU".
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
# The folder is named after the version and the flags (and, for a native build such as
# `make run CMAKE_ARGS=`, this CPU's feature flags), so no build meets a CPU it does not suit.
LLAMA  := $(shell grep -m1 '^llama-cpp-python==' constraints.txt)
CPU    := $(if $(findstring GGML_NATIVE=OFF,$(CMAKE_ARGS)),,$(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null))
WHEELS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/voxloop/wheels/$(shell echo '$(LLAMA) $(CMAKE_ARGS) $(CPU)' | sha256sum | cut -c1-16)

# Every install takes the versions the suite passed with (`make lock` renews the file).
PIP := $(BIN)/pip install --constraint constraints.txt --find-links $(WHEELS)

.PHONY: run test install install-dev llama-wheel lint format lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip wheel setuptools

$(WHEELS)/.built: | $(BIN)/python
	@echo "Building $(LLAMA) with CMAKE_ARGS='$(CMAKE_ARGS)' (about 3 minutes on 2 cores, once)"
	$(BIN)/pip wheel --no-cache-dir --no-deps --wheel-dir $(WHEELS) '$(LLAMA)'
	touch $@

llama-wheel: $(WHEELS)/.built

# The stamp files re-run pip only when pyproject.toml, the constraints or the wheel change;
# the wheel is installed over any other build of the same version (other CMAKE_ARGS).
$(VENV)/.installed-local: pyproject.toml constraints.txt $(WHEELS)/.built | $(BIN)/python
	$(PIP) -e '.[local]'
	$(BIN)/pip install --no-index --find-links $(WHEELS) --no-deps --force-reinstall '$(LLAMA)'
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt $(WHEELS)/.built | $(BIN)/python
	$(PIP) -e '.[local,dev]'
	$(BIN)/pip install --no-index --find-links $(WHEELS) --no-deps --force-reinstall '$(LLAMA)'
	touch $@ $(VENV)/.installed-local

install: $(VENV)/.installed-local
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/voxloop serve --host $(HOST) --port $(PORT)

test: install-dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: install-dev
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

# Renew constraints.txt: resolve pyproject.toml afresh in a throwaway venv, then pin what
# came. Run `make test` afterwards: the file is only as good as the suite that passed with it.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --upgrade pip wheel setuptools
	.lock-venv/bin/pip install -e '.[local,dev]'
	( echo "# Tested versions of everything 'make run' and 'make test' install. Renew: make lock"; \
	  .lock-venv/bin/pip freeze --all --exclude-editable ) > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache test-artifacts
