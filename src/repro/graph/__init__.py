"""Transitive Invariance part 1 (1708.02901 Sec. 3): mine moving-object patches, track them, build the
transitive graph and its training pair list.  Entry point: ``python -m repro.graph`` (see cli.py)."""
