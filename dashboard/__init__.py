"""The Dash dashboard that reads fitlens runs from MLflow."""
