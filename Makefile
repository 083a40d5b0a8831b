# canaryaudit: `make audit` installs and runs the default audit; `make test` installs and runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: audit test install lock bench clean browser flow prefect-server schedule sweep

audit: $(STAMP)
	$(BIN)/canaryaudit audit

test: $(STAMP) browser
	$(BIN)/python -m pytest

# Headless Chromium for the report's browser test (Debian packages; needs root or sudo).
# Without it the browser test skips with a reason, except under CI=1 where it fails.
browser:
	@.ci/install-browser || echo "chromium not installed: tests/test_report_browser.py will skip (fails when CI=1)"

install: $(STAMP)

# Reinstall when the dependency pins change. torch==2.13.0 resolves to the CPU wheel here.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,dask]"
	$(BIN)/canaryaudit plots template   # .dvc/plots/offline.html: `dvc plots show` without network
	touch $(STAMP)

# Regenerate constraints.txt from the current environment (after changing pyproject.toml pins).
lock: $(STAMP)
	{ echo "# Full, tested set of versions (pip freeze of a working install), used as pip constraints."; \
	  echo "# Regenerate with \`make lock\`."; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu/torch==2.13.0/'; } > constraints.txt

CRON ?= 0 3 * * *
GRID ?= train.batch_size=16,32 train.model.width=64,128
PREFECT_SERVER_ENV := PREFECT_HOME=$(CURDIR)/.prefect PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1

flow: $(STAMP)            # the audit as a Prefect flow, offline (temporary local server)
	$(BIN)/python pipelines/audit.py

prefect-server: $(STAMP)  # local Prefect server on loopback (UI http://127.0.0.1:4200), needed by `make schedule`
	$(PREFECT_SERVER_ENV) $(BIN)/prefect server start --host 127.0.0.1

schedule: $(STAMP)        # serve the audit on CRON against that server
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:4200/api} $(BIN)/canaryaudit schedule --cron "$(CRON)"

sweep: $(STAMP)           # a grid of settings, one workspace copy and one MLflow run per point
	$(BIN)/python pipelines/sweep.py $(GRID:%=--grid %)

bench: $(STAMP)
	$(BIN)/python benchmarks/foundation_speed.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/exposure_speed.py  # needs models/nonprivate: run `make audit` first
	$(BIN)/python benchmarks/extract_speed.py
	$(BIN)/python benchmarks/pii_attack_speed.py  # needs models/nonprivate and data/raw: run `make audit` first
	$(BIN)/python benchmarks/stage_startup.py

clean:
	rm -rf data reports/*.json .canaryaudit
