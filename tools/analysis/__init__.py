"""What is wrong in the data and where the model is blind: cross-validation, label errors, out-of-distribution."""
