"""The Dash dashboard that reads fitlens runs from MLflow."""

import tracking  # noqa: F401  (MLflow's telemetry off before MLflow is imported: see tracking/__init__.py)
