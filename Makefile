# Two commands for a fresh machine: `make demo` (fine-tune, validate, predict on the bundled data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CKPT := runs/demo/mobilenet_v2_100_best.ckpt
CONVERTED := checkpoints/mobilenet_v2_100_keras_imagenet.ckpt
COMPARE_DATA := runs/fmnist_compare_data
CHROMIUM := /usr/bin/chromium

.PHONY: demo test test-unit venv clean compare system-deps

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

demo: venv $(CONVERTED)
	$(PY) finetune.py --config configs/demo.yaml --overwrite True
	$(PY) validate.py --config configs/demo.yaml --ckpt_path $(DEMO_CKPT)
	$(PY) predict.py --config configs/demo.yaml --ckpt_path $(DEMO_CKPT) --visualize True

# the linter first (ruff.toml), then one pytest worker per core (pytest-xdist; idle cores pick up the next test)
test: venv system-deps
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n auto --dist worksteal tests

# the unit tests alone (no script run end to end): a quick check while working
test-unit: venv
	$(PY) -m pytest -q -n auto --dist worksteal -m "not cli" tests

# Debian packages the tests use, installed once where they are missing (as root, as on CI): Fashion-MNIST's
# source files (tests/unit/datasets/test_make_demo_data.py) and Chromium (tests/unit/evaluate/test_model_analysis.py renders report.html).
system-deps:
	@test -d /usr/share/datasets/fashion-mnist -a -x $(CHROMIUM) || { apt-get update -qq && \
		apt-get install -y -qq dataset-fashion-mnist chromium; }

clean:
	rm -rf runs

$(CONVERTED): | venv
	$(PY) tools/convert_keras_mobilenet_v2.py --out $(CONVERTED)

$(COMPARE_DATA)/variants.txt: | venv
	$(PY) tools/make_demo_data.py --out $(COMPARE_DATA) --trainval_per_class 100 --test_per_class 50

compare: venv system-deps $(CONVERTED) $(COMPARE_DATA)/variants.txt
	$(PY) tools/compare_modes.py --config configs/mobilenetv2/fmnist_compare.yaml --out runs/compare
