# dlgsweep: the quick start is `make demo` and `make test` on a fresh machine (Python 3.10+).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RESULTS ?= results
REPORT  ?= report
NO_MARKERS := not ray and not browser and not s3 and not cluster and not long and not install

.PHONY: demo test check docs e2e-cluster bench lint install clean

$(BIN)/dlgsweep: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[sweep,dev]'
	touch $@

install: $(BIN)/dlgsweep

# the main job: the demo sweep on a local Ray cluster and the bundled images, then its report
demo: install
	$(BIN)/dlgsweep plan demo
	$(BIN)/dlgsweep run demo --results $(RESULTS)
	$(BIN)/dlgsweep status $(RESULTS)/demo
	$(BIN)/dlgsweep report $(RESULTS)/demo --out $(REPORT)
	@echo "open $(REPORT)/index.html"

# everything CI runs: system packages the tests drive (chromium, sshd), the suite, the ray-up e2e
test: install
	bash scripts/system_deps.sh
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	DLGSWEEP_VENV=$(abspath $(VENV)) bash scripts/local_cluster_e2e.sh

# every test that needs none of Ray, a browser, S3 or a cluster (the markers), with Ray
# never started (ray.init disabled), so a test that starts it without the marker fails here
check: install
	DLGSWEEP_TEST_NO_RAY=1 $(BIN)/python -m pytest -q -n 2 -m "$(NO_MARKERS)" --durations=10

# the docs site into site/ (a broken link, a missing page or a reference block that cannot be
# written fails it)
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

e2e-cluster: install
	DLGSWEEP_VENV=$(abspath $(VENV)) bash scripts/local_cluster_e2e.sh

bench: install
	$(BIN)/python bench/bench_attack.py
	$(BIN)/python bench/bench_overhead.py
	$(BIN)/python bench/bench_report.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) $(RESULTS) $(REPORT) attack-out .pytest_cache site
