"""Configuration, MLflow tracking, the training entry point and the `fitlens` command line."""
