# semcodec — every target sets itself up: system packages (apt-get, when root), .venv, pinned deps.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.semcodec-installed
EXAMPLE := examples/bach_chorale.flac
OUT := out
# make install links the CLI of .venv here (a folder on most users' PATH)
BINDIR ?= $(HOME)/.local/bin

.PHONY: help setup sysdeps demo install uninstall test lint bench train train-instrument fuzz clean

help:
	@echo "make demo   encode + decode the bundled example"
	@echo "make install  put 'semcodec' on your PATH (a link in BINDIR=$(BINDIR))"
	@echo "make test   run the test suite"
	@echo "make lint   ruff and mypy on src/ (settings in pyproject.toml)"
	@echo "make bench  run the benchmark (writes docs/BENCHMARKS.md)"
	@echo "make train  retrain the neural synthesizer weights"
	@echo "make train-instrument  retrain the instrument classifier (~5 min on 2 cores)"
	@echo "make fuzz   fuzz the container parser (FUZZ_SECONDS=60)"

sysdeps:
	@scripts/install-sysdeps.sh

# requirements.lock pins the whole dependency tree; it is installed with --no-deps so that
# basic-pitch does not drag TensorFlow in (semcodec runs its ONNX model on onnxruntime).
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned Python dependencies into $(VENV) ..." >&2
	@$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock
	@$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: sysdeps $(STAMP)

demo: setup
	@mkdir -p $(OUT)
	@$(BIN)/semcodec encode -f $(EXAMPLE) $(OUT)/demo.smc
	@$(BIN)/semcodec decode -f $(OUT)/demo.smc $(OUT)/demo.wav
	@$(BIN)/python scripts/demo_report.py $(EXAMPLE) $(OUT)/demo.smc $(OUT)/demo.wav
	@echo "the semcodec command is $(BIN)/semcodec (or: source $(BIN)/activate; or: make install)"

# a symbolic link, so the CLI follows this checkout (git pull, make setup) without reinstalling
install: $(STAMP)
	@mkdir -p "$(BINDIR)"
	@if [ -e "$(BINDIR)/semcodec" ] && [ ! -L "$(BINDIR)/semcodec" ]; then \
		echo "make install: $(BINDIR)/semcodec exists and is not a link; remove it first" >&2; \
		exit 1; fi
	@ln -sfn "$(abspath $(BIN))/semcodec" "$(BINDIR)/semcodec"
	@echo "installed $(BINDIR)/semcodec -> $(abspath $(BIN))/semcodec"
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; \
		*) echo "note: $(BINDIR) is not on your PATH; add it: export PATH=\"$(BINDIR):\$$PATH\"";; esac

uninstall:
	@if [ -L "$(BINDIR)/semcodec" ] && \
		[ "$$(readlink "$(BINDIR)/semcodec")" = "$(abspath $(BIN))/semcodec" ]; then \
		rm "$(BINDIR)/semcodec" && echo "removed $(BINDIR)/semcodec"; \
	else echo "no link to this checkout's semcodec in $(BINDIR)"; fi

test: setup
	@$(BIN)/python -m pytest -q -rs tests

lint: setup
	@$(BIN)/ruff check src
	@$(BIN)/mypy

train-instrument: setup
	@$(BIN)/python -m semcodec.instrument_train

fuzz: setup
	@$(BIN)/python tests/fuzz_container.py --seconds $${FUZZ_SECONDS:-60}

bench: setup
	@scripts/install-sysdeps.sh --bench
	@$(BIN)/python -m bench.run

train: setup
	@$(BIN)/python -m semcodec.synth.train --init src/semcodec/weights/neural-8a54513562da.safetensors

clean:
	rm -rf $(VENV) $(OUT) .bench-cache .pytest_cache .mypy_cache .ruff_cache
