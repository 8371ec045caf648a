"""Training data: paired event windows and frames from bags, DSEC and MVSEC, and their cache.

Every source yields the same sample dicts (`bag_windows`), cut by the perception pipeline's
own window rule; `cache.build_cache` renders them once into safetensors shards, and
`dataset.WindowDataset` serves single windows or time-ordered runs of them for training.
"""
