"""LARS (Layer-wise Adaptive Rate Scaling, arXiv 1708.03888) and the large-batch study.

Public: :class:`repro.lars.optim.LARS` and :func:`repro.lars.optim.warmup_poly_schedule`
(imported by other stages as ``from repro.lars.optim import LARS``).
"""

ARMS = ("sgd", "lars")  # the study's two optimizers (the workflow's rules read this too)
