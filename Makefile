# LungCAD: the two set-up commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install demo test services browser nginx dicom-peers lint bench clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/lungcad demo $(DEMO_ARGS)

services:
	bash scripts/ensure-services.sh

browser:
	bash scripts/ensure-debian-package.sh chromium chromium "the browser tests"

nginx:
	bash scripts/ensure-debian-package.sh nginx nginx "the nginx config test"

# dcmtk (storescu, echoscu) and Orthanc: the DICOM tests' modality and PACS.
dicom-peers:
	bash scripts/ensure-debian-package.sh storescu dcmtk "the DICOM listener tests"
	bash scripts/ensure-debian-package.sh Orthanc orthanc "the PACS round-trip tests"

test: install services browser nginx dicom-peers
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check shared services tests bench

bench: install services
	$(PY) bench/bench_gateway.py

clean:
	rm -rf var .pytest_cache
