# bert-tickets: `make install && make demo`; `make find TASK=mnli SPARSITY=0.7`; `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first, pinned by TORCH (whatever build your pip index serves for that version).
TORCH ?= torch==2.13.0

TASK ?= mnli
SPARSITY ?= 0.7
CONFIG ?= paper
MODEL ?=
DATA_DIR ?=
OUTPUT_DIR ?= runs
ARGS ?=
DEMO_DATA := $(or $(DATA_DIR),$(wildcard ../shared/data/glue))

SOURCES ?= mnli,sst2
TARGETS ?= mnli,sst2

TICKET ?=
REPO_ID ?=

.PHONY: install test test-fast lint find transfer push demo study reproduce report bench profile clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, so that nothing below pulls another (CUDA) build of it
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"

# The suite in TEST_WORKERS processes of one thread each (pytest-xdist): on 2 cores about twice as fast as one
# process of two threads, since much of a test is Python and process start-up. `make test` is every test and prints
# the slowest; `make test-fast` leaves out the slow ones (tests/conftest.py's SLOW) while working.
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS)
test:
	$(PYTEST) --durations=15

test-fast:
	$(PYTEST) -m "not slow"

lint:
	$(BIN)/ruff check bert_tickets tasks configs scripts tests
	$(BIN)/mypy

find:
	$(BIN)/bert-tickets find --task $(TASK) --sparsity $(SPARSITY) --config $(CONFIG) \
		$(if $(MODEL),--model $(MODEL)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --output-dir $(OUTPUT_DIR) $(ARGS)

transfer:
	$(BIN)/bert-tickets transfer --sources $(SOURCES) --targets $(TARGETS) --sparsity $(SPARSITY) --config $(CONFIG) \
		$(if $(MODEL),--model $(MODEL)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --output-dir $(OUTPUT_DIR) $(ARGS)

# make push TICKET=runs/.../tickets/sparsity_0.7000 REPO_ID=you/bert-mnli-70 [ARGS="--private" or "--dry-run OUT"]
# make push STUDY=runs/studies/minilm-cpu REPO_PREFIX=you/minilm [ARGS=...]: every ticket, the report, a collection
push:
ifeq ($(origin STUDY),command line)  # STUDY also has a default, for `make report`
	@test -n "$(REPO_PREFIX)" || { echo "make push STUDY=... needs REPO_PREFIX=<owner/prefix>" >&2; exit 2; }
	$(BIN)/bert-tickets push --study $(STUDY) --repo-prefix $(REPO_PREFIX) $(ARGS)
else
	@test -n "$(TICKET)" -a -n "$(REPO_ID)" || { echo "make push needs TICKET=<ticket folder> REPO_ID=<owner/name> (or STUDY=<folder> REPO_PREFIX=<owner/prefix>)" >&2; exit 2; }
	$(BIN)/bert-tickets push --ticket $(TICKET) --repo-id $(REPO_ID) $(ARGS)
endif

# The paper's comparison in small: IMP to 50% on STS-B beside random pruning and dense, two seeds each, with a verdict
# (about 9 minutes on 2 CPU cores). Local GLUE files when DATA_DIR or ../shared/data/glue has them, else the Hub.
demo:
	$(BIN)/bert-tickets demo $(if $(DEMO_DATA),--data-dir $(DEMO_DATA)) --output-dir $(OUTPUT_DIR)

# A declarative study (configs/studies/NAME.yaml or a file) and its report; `make reproduce` is the paper's.
SPEC ?= minilm-cpu
STUDY ?= runs/studies/$(SPEC)
study:
	$(BIN)/bert-tickets study $(SPEC) $(ARGS)

reproduce:
	$(BIN)/bert-tickets study paper $(ARGS)

report:
	$(BIN)/bert-tickets report $(STUDY)

# Engine vs Hugging Face Trainer, masked vs dense, K concurrent fine-tunings (figures as a table and JSON).
# PRESET=cpu (default without a GPU, minutes) or gpu; ARGS for any other flag of scripts/bench_finetune.py.
PRESET ?=
bench:
	$(BIN)/python scripts/bench_finetune.py $(if $(PRESET),--preset $(PRESET)) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)) --out $(OUTPUT_DIR)/bench/bench.json $(ARGS)

# Where a packed step's time goes (host vs device, launches, top operators): K=16 on a GPU, e.g. ARGS="--k 2" on a CPU
profile:
	$(BIN)/python scripts/step_profile.py $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
		--out $(OUTPUT_DIR)/bench/step-profile.md $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
