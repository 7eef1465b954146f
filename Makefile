# The README's two commands: `make run` (whole DAG on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
CORES  ?= all

.PHONY: run test test-fast lint smoke rehearsal bench bench-gpu report clean-results

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## run: make the venv if missing and run the whole DAG on config.yaml (the embedded default)
run: $(VENV)/.installed
	PATH=$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES)

## test: make the venv if missing and run the test suite (includes an end-to-end smoke run)
test: $(VENV)/.installed
	PATH=$(BIN):$$PATH OMP_NUM_THREADS=1 $(BIN)/python -m pytest

## test-fast: the unit tests alone (no end-to-end DAG, SLURM, torchrun or kill-and-rerun runs), ~2 min
test-fast: $(VENV)/.installed
	PATH=$(BIN):$$PATH OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not slow"

## lint: pyflakes-level errors and import order (ruff), Snakemake formatting (snakefmt); CI runs it
lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/snakefmt --check Snakefile workflow/rules

## smoke: the whole DAG on workflow/configs/smoke.yaml, into results/
smoke: $(VENV)/.installed
	PATH=$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) --configfile workflow/configs/smoke.yaml

## rehearsal: the whole full-scale DAG on miniature copies of the real datasets, through a local
##            single-node SLURM (as root; starts and stops it) -> claims and report at scale full
rehearsal: $(VENV)/.installed
	VENV=$(abspath $(VENV)) .ci/slurm/run_rehearsal.sh

## bench: benchmarks incl. the smoke DAG (about 2-3 min on 2 cores) -> results/bench.json, results/bench.png
##        BENCH_ARGS="--dag both" adds the whole DAG on the embedded default (~25 min more); "--quick": ~2 min
bench: $(VENV)/.installed
	PATH=$(BIN):$$PATH $(BIN)/python -m bench $(BENCH_ARGS)

## bench-gpu: the GPU check on a CUDA machine (AMP vs fp32 step times of the full-scale models, torchvision's
##            reference detection step, 2-rank nccl DDP, the smoke DAG on the GPU) -> results/bench_gpu.json;
##            on a CPU-only machine it says so and exits 0
bench-gpu: $(VENV)/.installed
	PATH=$(BIN):$$PATH $(BIN)/python -m bench.gpu $(BENCH_ARGS)

clean-results:
	rm -rf results/*/ results/*.json results/*.csv .snakemake/
