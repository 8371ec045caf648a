"""Retraining on recorded robot data: the two GEP stages, task fine-tuning, and export."""
