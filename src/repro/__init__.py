"""repro: a Snakemake pipeline that re-runs six deep-learning papers at laptop or cluster scale."""

__version__ = "0.1.0"
