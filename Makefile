# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint fmt bench fuzz faults load install clean worker

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## the whole stack with demo data: http://127.0.0.1:5000
	$(BIN)/python -m devtools.stack

test: $(STAMP)  ## the whole suite against real servers the tests start themselves
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .

worker: $(STAMP)
	$(BIN)/python worker.py

fuzz: $(STAMP)  ## schemathesis over every /api operation and the linked workflows, many examples each
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(BIN)/python -m pytest tests/test_api_fuzz.py -q

faults: $(STAMP)  ## only the `slow` tests (fault injection: killed worker, SMTP outage, Redis restart); make test runs them too
	$(BIN)/python -m pytest -m slow -q

load: $(STAMP)  ## 32 concurrent clients against ingestion + dashboards for 60 s; nothing lost, no 5xx
	$(BIN)/python -m bench.load

bench: $(STAMP)  ## benchmarks: ratios measured in one run, written to bench/RESULTS.md
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache test-output
