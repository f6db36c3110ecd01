"""Measuring trained models: outputs, metrics, teacher statistics, attacks."""
