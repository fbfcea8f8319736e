"""Reports: accuracy reports of models and artifacts."""
