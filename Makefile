# make demo: install if needed, then three synthetic nights end to end on local Spark.
# make test: install if needed, then the whole test suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CONF ?= conf/local.yaml

.PHONY: install demo test test-fast bench clean

install:
	@VENV=$(VENV) bash tools/install.sh

demo: install
	@VENV=$(VENV) bash tools/demo.sh $(DEMO_CONF)

test: install
	@$(PY) -m pytest

test-fast: install
	@$(PY) -m pytest -m "not integration"

# bench/quality.py runs with --no-doc here: its documented block is rewritten only by the
# command docs/quality.md names.
bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b $$([ $$b = bench/quality.py ] && echo --no-doc) || exit 1; done

clean:
	rm -rf data build spark-warehouse
