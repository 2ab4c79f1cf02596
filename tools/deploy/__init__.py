"""Shipping a fine-tuned model: export bundle, int8 quantisation."""
