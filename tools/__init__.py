"""Building blocks shared by finetune.py, validate.py and predict.py."""
