"""Data stage: synthesize the embedded default datasets or download the real ones (checksummed)."""
