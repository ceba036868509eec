# The two Quick start commands (README): `make demo` and `make test`.
# Everything they need is installed here, into .venv, from the pinned requirements.lock.

VENV     ?= .venv
PY       := $(VENV)/bin/python
DURATION ?= 120

.PHONY: setup demo test unit kafka-up kafka-down prometheus-tools clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

demo: setup
	$(VENV)/bin/rings demo --duration $(DURATION)

test: setup kafka-up prometheus-tools
	$(PY) -m pytest -q

unit: setup
	$(PY) -m pytest -q tests/unit

kafka-up:
	deploy/local-kafka up

kafka-down:
	deploy/local-kafka down

# prometheus and promtool (Debian's package) for the monitoring test; nothing if installed.
prometheus-tools:
	deploy/prometheus/install-tools

clean:
	rm -rf $(VENV) .rings-data .pytest_cache
