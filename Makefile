# `make report`, `make test` and `make test-fast` build .venv themselves (Python 3.11 + pip; torch from the local
# wheel store, mxnet 1.9.1 with numpy 1.23.5, the model zoos and ONNX (the zoo extra), all in ONE pip command so
# nothing upgrades numpy).
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: report test test-fast docs lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[torch,mxnet,zoo,dev]' 2>&1 \
	  | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	$(PY) -c "import numpy, torch, mxnet, gluonnlp, onnx; print('numpy', numpy.__version__, 'torch', torch.__version__, 'mxnet', mxnet.__version__, 'gluonnlp', gluonnlp.__version__, 'onnx', onnx.__version__)"
	touch $(STAMP)

report: $(STAMP)
	$(VENV)/bin/ganparity report

# The whole suite (what CI runs).
test: $(STAMP)
	$(PY) -m pytest -q

# Without the tests marked slow (pytest.mark.slow): a few minutes on 2 CPU cores.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Every measured table of README.md and docs/ from the committed data (reports/results.json,
# benchmarks/results/*.json); tests/test_docs.py fails while one is out of date.
docs: $(STAMP)
	$(VENV)/bin/ganparity docs

lint: $(STAMP)
	$(VENV)/bin/ruff check ganparity common backends benchmarks tests

bench: $(STAMP)
	$(VENV)/bin/ganparity bench step

clean-venv:
	rm -rf $(VENV)
