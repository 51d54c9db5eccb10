"""Configuration, MLflow tracking, the training entry point and the `fitlens` command line."""

import os

# MLflow's usage telemetry is off in fitlens' processes unless the user turns it on (MLFLOW_DISABLE_TELEMETRY=
# false). Its background thread, when it cannot reach the internet (a cluster node, this sandbox), removes an
# environment variable that a concurrent request is reading, and that request fails ("API request ... failed
# with exception '_MLFLOW_TELEMETRY_SESSION_ID'"): seen once in 8 concurrent writers to a server. Set before
# MLflow is imported, which reads it then.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
