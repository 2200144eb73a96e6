"""Snapshots and labels, model training, evaluation, the rating artifact and MLflow logging."""
