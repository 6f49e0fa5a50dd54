# One command to set up and run the main job (make demo), one to set up and run the tests (make test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-extras-stamp
RUNS   ?= runs
# the optional back ends and converters, installed so that `make test` tests them all
EXTRAS ?= openvino,ncnn,coreml,tflite

.PHONY: setup demo test test-slow clean

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install -e '.[dev]'
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e '.[dev,$(EXTRAS)]'
	@touch $(TEST_STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python tools/demo.py

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n 2 --durations=15 -q

test-slow: $(TEST_STAMP)
	$(BIN)/python -m pytest -m slow -q

clean:
	rm -rf $(RUNS) build *.egg-info
