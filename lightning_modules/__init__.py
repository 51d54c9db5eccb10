"""Models, data and the LightningModule of fitlens; no MLflow or Ray import here."""
