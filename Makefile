# canaryaudit: `make audit` installs and runs the default audit; `make test` installs and runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: audit test install lock bench clean browser schedule

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
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

# Regenerate constraints.txt from the current environment (after changing pyproject.toml pins).
lock: $(STAMP)
	{ echo "# Full, tested set of versions (pip freeze of a working install), used as pip constraints."; \
	  echo "# Regenerate with \`make lock\`."; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu/torch==2.13.0/'; } > constraints.txt

bench: $(STAMP)
	$(BIN)/python benchmarks/foundation_speed.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/exposure_speed.py  # needs models/nonprivate: run `make audit` first

clean:
	rm -rf data reports/*.json .canaryaudit
