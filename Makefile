# The two commands: `make demo` and `make test`. Both create .venv/ and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf

.PHONY: demo test check lint types buf protos protos-check bench fmt clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dsop demo

test: $(STAMP)
	$(PY) -m pytest

check: lint types buf protos-check

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

types: $(STAMP)
	$(VENV)/bin/mypy

$(BUF):
	npm install --silent --no-save --no-audit --no-fund --prefix .tools @bufbuild/buf@$(BUF_VERSION)

buf: $(BUF)
	$(BUF) lint protos

# Regenerates dsop/ (the generated package) from protos/.
protos: $(STAMP)
	scripts/gen_protos.sh

# Fails when dsop/ is not what protos/ generates.
protos-check: $(STAMP)
	rm -rf .tools/gen && mkdir -p .tools/gen
	scripts/gen_protos.sh .tools/gen >/dev/null
	diff -r --exclude=__pycache__ dsop .tools/gen/dsop || \
		(echo "dsop/ is stale: run 'make protos' and commit the result" >&2; exit 1)

# Every scenario at its full size; each writes its JSON, a Markdown summary (and the newer ones
# PNG plots) to benchmarks/results/.
BENCH_SCENARIOS := enforcement interactive fanout transactions streams workers

bench: $(STAMP)
	status=0; for scenario in $(BENCH_SCENARIOS); do \
		$(PY) -m benchmarks $$scenario --json benchmarks/results/$$scenario.json || status=1; \
	done; exit $$status

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
