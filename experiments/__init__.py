"""Experiments that train and score GEP models end to end (see run_small.py)."""
