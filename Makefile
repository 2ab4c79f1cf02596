# Two commands for a fresh machine: `make demo` (fine-tune + validate on the bundled data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CKPT := runs/demo/mobilenet_v3_small_100_best.ckpt

.PHONY: demo test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

demo: venv
	$(PY) finetune.py --config configs/demo.yaml --overwrite True
	$(PY) validate.py --config configs/demo.yaml --ckpt_path $(DEMO_CKPT)

test: venv
	$(PY) -m pytest -q tests

clean:
	rm -rf runs
