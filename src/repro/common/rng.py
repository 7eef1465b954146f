"""The random streams every stage draws from, named, so no two of them share numbers by accident.

A stream is a run's ``seed`` combined with a fixed *stream id* and, where the stream restarts, an index
(step, epoch, image). numpy streams are ``np.random.default_rng([seed, STREAM, *index])`` (a seed
sequence: distinct ids give independent streams); torch generators take one integer, built by
:func:`stream_seed` as ``seed * stride + index`` (strides are primes above any index a run reaches, so
two (seed, index) pairs never collide) or ``seed + offset`` for a stream drawn once per run.
Resumable loops reseed from (seed, step) so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

# numpy seed-sequence stream ids (the second entry of default_rng([seed, id, ...]))
METRICS_SUBSAMPLE = 1  # graph: the pair sample the precision metrics are computed on
PLOT_SUBSAMPLE = 7  # gan: which final samples are kept for the figures
HFLIP = 7  # detect: per (step, image) horizontal-flip coin (after the step and image indices)
LABEL_SHUFFLE = 1 << 20  # data: the synthetic classification labels' order (beyond any image index)

# torch generator strides and offsets (stream_seed)
EPOCH_STRIDE = 1_000_003  # lars, pretrain: per-epoch / per-step orders
QUANT_EPOCH_STRIDE = 100_003  # quant: per-epoch training order
AUGMENT_STRIDE = 7919  # quant: per-step CIFAR augmentation
AUGMENT_OFFSET = 7  # quant: the augmentation generator before its first reseed
PRUNED_OFFSET = 1  # quant: the pruned net's retraining and fine-tuning orders
HESSIAN_OFFSET = 12345  # quant: which training samples the Hessian is estimated on


def stream_seed(seed: int, index: int = 0, *, stride: int = EPOCH_STRIDE) -> int:
    """One integer seed for a torch generator: stream ``index`` (step, epoch) of run ``seed``."""
    return seed * stride + index
