# The two commands of the README:  `make repro` (install + run the pipeline), `make test` (install + tests).
VENV ?= .venv
PY := $(VENV)/bin/python
ACTIVATE := . $(VENV)/bin/activate

.PHONY: install repro test lint docs bench clean-venv server server-stop hooks

install: $(VENV)/.installed

# torch is installed first and pinned: an unpinned torch would pull several GB of CUDA packages.
# requirements.lock pins every other package to the versions CI runs with.
$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $@

repro: install
	$(ACTIVATE) && dvc repro

# two workers (pytest-xdist) handed the tests one at a time in tests/conftest.py's order; the debug DAG is built once for both
test: install
	$(ACTIVATE) && pytest -n 2 --dist load --maxschedchunk 1

lint: install
	$(ACTIVATE) && ruff check src pipelines tests

# the documentation site (MkDocs Material, mkdocs.yml) from docs/ into site/; --strict: a broken link or a
# missing page fails the build
docs: install
	$(ACTIVATE) && mkdocs build --strict --site-dir site

# The team setup: an MLflow server on PostgreSQL with proxied artifacts, all in .mlflow-server/ (see
# scratchlm/team_server.py); it prints the `export MLFLOW_TRACKING_URI=...` line the stages then need.
server: install
	$(PY) -m scratchlm.team_server start --folder .mlflow-server

server-stop: install
	$(PY) -m scratchlm.team_server stop --folder .mlflow-server

# git refuses to commit a run record made on a dirty tree (scratchlm publish-check --staged, .githooks/pre-commit)
hooks: install
	git config core.hooksPath .githooks

clean-venv:
	rm -rf $(VENV)

# bench/size_throughput.py is not among them: it writes reports/bench/size_throughput.json, an input of scaling_fit
bench: install
	$(ACTIVATE) && for b in matmul_peak train_throughput data_throughput dedup_scale eval_throughput pipeline quality_per_compute ladder_choice alignment_seeds; do python bench/$$b.py || exit 1; done
