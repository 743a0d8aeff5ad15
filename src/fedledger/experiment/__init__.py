"""Experiments: validated YAML config, the runner, metrics, plots."""
