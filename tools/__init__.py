"""The suite's library: the modules behind finetune.py, validate.py, predict.py, export.py and the CLIs in tools/."""
