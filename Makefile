# The two commands that set up everything on a fresh machine:
#   make demo   -- the main job: `weightspace demo` on the embedded data
#   make test   -- lint and the test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
DEMO_OUT ?= demo-out

.PHONY: setup demo test clean

$(VENV)/.torch:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU PyTorch first, so that the package's plain `torch` requirement installs nothing more.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(PY) -m pip install -q -e ".[export]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/weightspace demo -o $(DEMO_OUT) --overwrite

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks scripts examples
	$(PY) -m pytest -q -n 2 --dist loadscope

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
