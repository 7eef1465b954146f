"""Report stage: every stage's claims beside the papers' numbers, figures and provenance, one page."""
