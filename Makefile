# Two commands on a fresh machine (Debian, Python 3.11, package registries only):
#   make demo   set up .venv and run the whole DAG on the offline demo data
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
REFERENCE ?= docs/reference/fashion-mnist
SNAKEMAKE := $(BIN)/snakemake
# Training and extraction jobs declare `resources: gpu=1`. With GPUs, at most one job per
# GPU; on a CPU-only machine the counter would only serialise CPU jobs, so it is set to
# the core count there.
GPUS ?= $(shell n=$$(nvidia-smi -L 2>/dev/null | wc -l); [ "$$n" -gt 0 ] && echo $$n || echo $(CORES))

.PHONY: setup demo demo-all fashion fashion-reference fashion-compare test lint format dryrun clean-demo bench bench-quick gpu-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[workflow,dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(SNAKEMAKE) --cores $(CORES) --resources gpu=$(GPUS) --configfile config/demo.yaml \
		--printshellcmds --show-failed-logs
	$(BIN)/python -m kdaug.verify --configfile config/demo.yaml

# Every digits experiment of the three papers (the demo's models are reused).
DEMO_ALL := config/demo.yaml config/demo_all.yaml
demo-all: setup
	$(SNAKEMAKE) --cores $(CORES) --resources gpu=$(GPUS) --configfile $(DEMO_ALL) \
		--printshellcmds --show-failed-logs
	$(BIN)/python -m kdaug.verify --configfile $(DEMO_ALL)

# The real-data suite: all three papers on real Fashion-MNIST (Debian's
# dataset-fashion-mnist, read as a mirror), 3 seeds; its wall time goes to results/.
fashion: setup
	@start=$$(date +%s); \
	$(SNAKEMAKE) --cores $(CORES) --resources gpu=$(GPUS) --configfile config/fashion.yaml \
		$(FASHION_LAYERS) --printshellcmds --show-failed-logs && \
	echo $$(( $$(date +%s) - start )) > results/fashion.wall_s && \
	echo "make fashion: $$(cat results/fashion.wall_s) s"

# Publish a finished `make fashion` as the committed reference and the README's claims table.
fashion-reference: setup
	$(BIN)/python -m kdaug.report.reference publish results/experiments $(REFERENCE) \
		--configfile config/config.yaml config/fashion.yaml --command "make fashion" \
		--wall-s $$(cat results/fashion.wall_s)
	$(BIN)/python -m kdaug.report.reference readme $(REFERENCE) README.md

# Your finished `make fashion` against the committed reference, cell by cell.
fashion-compare: setup
	$(BIN)/python -m kdaug.report.compare $(REFERENCE) results/experiments

# pytest exits 5 when it collects no tests; say so rather than pass silently or fail.
test: setup
	@rc=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

# Throughput against a DataLoader/PIL baseline and the compute ceiling (prints figures).
bench: setup
	$(BIN)/python bench/train_throughput.py $(BENCH_ARGS)

bench-quick: setup
	$(BIN)/python bench/train_throughput.py --quick

# Every CUDA path once, one table (results/gpu_check.md); GPU_CHECK_ARGS=--cpu: the tests' smoke run.
gpu-check: setup
	$(BIN)/python bench/gpu_check.py $(GPU_CHECK_ARGS)

dryrun: setup
	$(SNAKEMAKE) -n --cores 4 --resources gpu=1

lint: setup
	$(BIN)/ruff check src tests workflow/scripts bench
	$(BIN)/ruff format --check src tests workflow/scripts bench
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(SNAKEMAKE) --lint

format: setup
	$(BIN)/ruff format src tests workflow/scripts bench
	$(BIN)/snakefmt Snakefile workflow/rules

clean-demo:
	rm -rf results/data/digits results/models/digits results/experiments/das2020_digits*
