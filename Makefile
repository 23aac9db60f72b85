# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Train BCL on digits-LT (IF 100) on CPU, evaluate, print the shot-group table, write plots.
demo: $(STAMP)
	$(PY) train.py --config configs/digits_bcl.yaml --output_dir outputs/demo_bcl
	$(PY) eval.py --model local-dir:outputs/demo_bcl/model --data digits-lt \
		--output outputs/demo_bcl/eval

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/losses.py
	$(PY) bench/data.py
	$(PY) bench/eval.py

clean:
	rm -rf outputs runs
