# graphopt: two commands set everything up.
#   make demo   create .venv, install graphopt, optimize and benchmark a built-in model
#   make test   create .venv, install graphopt with [dev,openvino,bench,ray], run the tests

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= resnet50
OUT    := build/demo

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[openvino]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,openvino,bench,ray]"
	touch $@ $(VENV)/.installed-demo

demo: $(VENV)/.installed-demo
	mkdir -p $(OUT)
	$(BIN)/graphopt optimize zoo:$(DEMO) -o $(OUT)/$(DEMO).opt.onnx --report $(OUT)/$(DEMO).report.json
	$(BIN)/graphopt bench zoo:$(DEMO) $(OUT)/$(DEMO).opt.onnx --backend ort-cpu,openvino-cpu --duration 3

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check graphopt passes backends bench tests

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/fusion_nodes.py

clean:
	rm -rf build $(VENV) .pytest_cache
