# Two entry points that do all the set-up: `make run` and `make test`.
# Both create .venv when missing and (re)install only when pyproject.toml changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# `make run`: PoS-BFL under attack beside FedAvg on the same data; `make run CONFIG=x.yaml`: one run
QUICKSTART ?= configs/quickstart-bfl.yaml configs/quickstart-vanilla.yaml

.PHONY: run test test-long lint bench clean fashion ganache

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned and installed first: the CPU build on disk satisfies the pin, and an
# unpinned torch would pull several GB of CUDA packages.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

# The smart-contract stack (contracts layer: Vyper on py-evm through titanoboa). vyper pins
# cbor2<6 while the codec needs cbor2 6, so vyper and titanoboa go in without their
# declared dependencies and their runtime ones are listed here; when this fails the
# contract tests skip with a message.
CONTRACT_DEPS := asttokens==3.0.2 pycryptodome==3.24.1 lark==1.3.1 immutables==0.21 wheel \
	eth-stdlib==0.2.8 eth_abi==6.0.0 py-evm==0.12.1b1 eth-typing==6.0.0 eth-utils==6.0.0 \
	eth-keys==0.8.0 eth-hash==0.8.0 eth-account==0.14.0 vvm==0.3.2 requests rich \
	coincurve==21.0.0 web3==8.0.0
CONTRACT_PKGS := vyper==0.4.3 titanoboa==0.2.8

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	( $(BIN)/pip install --quiet $(CONTRACT_DEPS) && \
	  $(BIN)/pip install --quiet --no-deps $(CONTRACT_PKGS) ) || \
	  echo "contracts stack could not be installed: its tests will be skipped"
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
ifdef CONFIG
	$(BIN)/fedledger run $(CONFIG)
else
	$(BIN)/fedledger compare $(QUICKSTART)
endif

# Fashion-MNIST for the tests that use it: Debian's dataset-fashion-mnist (they skip with
# a message when it cannot be installed, e.g. without root or apt).
FASHION := /usr/share/datasets/fashion-mnist

fashion:
	@[ -d $(FASHION) ] || ( command -v apt-get >/dev/null && \
	  ( timeout 300 apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	    ( timeout 300 apt-get update -qq >/dev/null 2>&1 && \
	      timeout 300 apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ) ) ) || \
	  echo "Fashion-MNIST (dataset-fashion-mnist) could not be installed: its tests will skip"

# ganache 7 from npm: a real Ethereum JSON-RPC node for the contracts layer's tests (they
# skip with the install command when it is missing, e.g. without npm).
GANACHE := .npm-tools/node_modules/.bin/ganache

ganache:
	@[ -x $(GANACHE) ] || ( command -v npm >/dev/null && \
	  timeout 600 npm install --silent --no-audit --no-fund --prefix .npm-tools ganache@7.9.2 \
	    >/dev/null 2>&1 ) || \
	  echo "ganache (npm) could not be installed: its tests will skip"

# Three test workers on two cores: the localnet and Ray tests spend much of their time
# waiting on network time, so a third worker fills the cores; worksteal balances the long
# end-to-end tests; --durations prints the slowest, to keep the suite under 15 minutes.
test: $(TEST_STAMP) fashion ganache
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 3 --dist worksteal -q --durations=25 -m "not long"

# The end-to-end tests of several minutes each (marked `long`), kept out of `make test`
# so that the suite stays under 15 minutes on 2 cores.
test-long: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m long  # one at a time: two muDFL localnets at once miss their slots

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs .pytest_cache
