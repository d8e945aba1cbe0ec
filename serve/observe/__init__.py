"""Observability: JSON logs and metrics (CloudWatch EMF, Prometheus)."""
