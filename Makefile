# Two commands for a fresh machine: `make demo` (fine-tune, validate, predict on the bundled data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CKPT := runs/demo/mobilenet_v2_100_best.ckpt
CONVERTED := checkpoints/mobilenet_v2_100_keras_imagenet.ckpt
COMPARE_DATA := runs/fmnist_compare_data
CHROMIUM := /usr/bin/chromium

.PHONY: demo test venv clean compare

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

test: venv $(CHROMIUM)
	$(PY) -m pytest -q tests

# tests/test_model_analysis.py renders report.html in headless Chromium (Debian package, needs root)
$(CHROMIUM):
	apt-get install -y chromium || (apt-get update && apt-get install -y chromium)

clean:
	rm -rf runs

$(CONVERTED): | venv
	$(PY) tools/convert_keras_mobilenet_v2.py --out $(CONVERTED)

$(COMPARE_DATA)/variants.txt: | venv
	$(PY) tools/make_demo_data.py --out $(COMPARE_DATA) --trainval_per_class 100 --test_per_class 50

compare: venv $(CONVERTED) $(COMPARE_DATA)/variants.txt
	$(PY) tools/compare_modes.py --config configs/mobilenetv2/fmnist_compare.yaml --out runs/compare
