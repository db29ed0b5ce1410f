# The two commands a newcomer needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint unit integration contract bench tools image clean

setup: $(STAMP) tools

# Reinstalled only when the package definition changes; `make setup` is quick when done.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet -e '.[dev,examples]'
	@touch $@

# The engines: built from their Go modules into a per-user cache when not on PATH (see tools/README.md);
# quick when done.
tools:
	tools/install-engines.sh tofu
	tools/install-engines.sh providers
	tools/install-engines.sh pulumi

demo: setup
	$(BIN)/iac-runner demo

lint: setup
	$(BIN)/ruff check iac_runner backends tests bench
	$(BIN)/ruff format --check iac_runner backends tests bench
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile image/bases.Dockerfile
	$(BIN)/shellcheck tools/*.sh image/*.sh bench/*.sh .ci/run

unit: setup
	$(BIN)/python -m pytest tests/unit -q

integration: setup
	$(BIN)/python -m pytest tests/integration -q

contract: setup
	$(BIN)/python -m pytest tests/contract -q

test: lint
	$(BIN)/python -m pytest tests -q

# The Container Driver image, tagged iac-driver-runner:local: a Docker engine (started here when there is none and
# this is a Debian machine with root), the official bases or ones made from Debian's packages, the tool cache as
# the engines' seed (see image/build.sh). Prints the build time, the image size and its largest layers.
image:
	image/build.sh

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
