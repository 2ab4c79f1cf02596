"""Shipping a fine-tuned model: the folder export.py writes for a machine without MindSpore (bundle.py), its
standalone predict.py (standalone_predict.py, copied verbatim) and int8 quantisation (quantize.py)."""
