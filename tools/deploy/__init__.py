"""Deployment: the folder export.py writes for a machine without MindSpore (bundle.py) and its standalone
predict.py (standalone_predict.py, copied verbatim)."""
