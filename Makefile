# Every target builds what it needs from nothing: a .venv with the package and its extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Coverage of the caller's process (the workers' code runs in children it does not follow);
# the floor is a little under the figure the suite reached when it was set (82.8 %).
COVERAGE := --cov=olympipe --cov-report=term:skip-covered --cov-fail-under=80
DEMO_STAMP := $(VENV)/.demo-stamp

.PHONY: all install lint test test-long demo bench soak clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,examples]'
	touch $(STAMP)

install: $(STAMP)

# The demo needs numpy and pillow only, not the dev tools or Ray.
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[examples]'
	touch $(DEMO_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check olympipe tests examples benchmarks
	$(BIN)/mypy --strict olympipe tests
	$(BIN)/basedpyright

test: lint
	$(BIN)/python -m pytest -q -n 2 $(COVERAGE)

test-long: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q

demo: $(DEMO_STAMP)
	$(BIN)/python examples/image_preprocessing.py

OLD := benchmarks/_venv_olympipe2

# olympipe 2.2.0 lives in its own environment: both packages are called olympipe.
$(OLD)/.installed-stamp:
	$(PYTHON) -m venv $(OLD)
	$(OLD)/bin/python -m pip install --quiet olympipe==2.2.0 numpy
	touch $@

bench: $(STAMP) $(OLD)/.installed-stamp
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	# An editable install has no bytecode until a run writes it (never, under
	# PYTHONDONTWRITEBYTECODE); an installed wheel has it, so compile as pip would.
	$(BIN)/python -m compileall -q olympipe
	$(BIN)/python benchmarks/run_all.py

soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
