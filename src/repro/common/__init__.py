"""Code shared by every stage: seeding, provenance, atomic I/O, checkpoints and the claims contract."""

from repro.common.claims import ClaimRow, ci95, verdict_from_ci, write_claims
from repro.common.io import atomic_write_bytes, atomic_write_json, read_json
from repro.common.provenance import provenance_record, write_provenance
from repro.common.runtime import configure_threads, seed_everything

__all__ = [
    "ClaimRow",
    "atomic_write_bytes",
    "atomic_write_json",
    "ci95",
    "configure_threads",
    "provenance_record",
    "read_json",
    "seed_everything",
    "verdict_from_ci",
    "write_claims",
    "write_provenance",
]
