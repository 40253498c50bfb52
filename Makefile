# Two entry points: `make demo` (simulate a study and run the pipeline on it) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU build of torch where no torch is present yet; override (e.g. TORCH_SPEC=) to keep a CUDA build you installed.
TORCH_SPEC ?= torch==2.13.0
CORES ?= 2
DEMO_SAMPLES ?= 12
TEST_WORKERS ?= 2

.PHONY: demo test install clean-demo lint

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The stamp is remade only when the project's dependencies change, so a second `make demo` installs nothing.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/activate
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo/samples.tsv: | $(VENV)/.installed
	$(VENV)/bin/ms2study simulate demo --samples $(DEMO_SAMPLES) --seed 0

demo: demo/samples.tsv
	$(VENV)/bin/ms2study run demo --cores $(CORES)
	@echo "Report: $(CURDIR)/demo/results/study/report.html"

# Two workers, one test file each (module fixtures such as a study's pipeline run stay once per file): the suite
# is mostly single-threaded Python and subprocess start-up, so both cores of a 2-core machine get used.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=30

lint: $(VENV)/.installed
	$(VENV)/bin/snakemake -s Snakefile -d demo --lint

clean-demo:
	rm -rf demo
