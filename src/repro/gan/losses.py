"""Loss terms as pure functions of logits and tensors (no modules, no state).

Notation: ``D(x) = sigmoid(logit)``; ``-log D = softplus(-logit)``; ``-log(1 - D) = softplus(logit)``.

- GAN (Goodfellow et al. 2014), non-saturating generator loss ``-log D(G(z))`` (MGAN's code uses it).
- Reg-GAN (1612.02136 §3.1, eqs. 1-2) with the **corrected sign** of the mode regularizer: the paper
  prints ``+ lambda2 log D(G(E(x)))`` inside a loss that G and E *minimise*, which would push
  G(E(x)) *away* from what D calls real, against the stated intent ("the mode regularizer … pushes
  G(E(x)) towards the modes"). We minimise ``lambda2 * (-log D(G(E(x))))`` instead;
  :func:`mode_regularizer` keeps the printed sign behind ``corrected=False`` so a test can show
  the difference.
- MDGAN (1612.02136 App. A): manifold step and diffusion step.
- MGAN (1708.02556 eq. 2): ``D`` loss plus the classifier's cross-entropy on fakes, and the
  generators' non-saturating loss plus ``beta`` times that cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "discriminator_loss",
    "generator_loss",
    "reconstruction_distance",
    "mode_regularizer",
    "reggan_regularizer",
    "mdgan_manifold_loss",
    "mgan_classifier_loss",
]


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-E log D(x_real) - E log(1 - D(x_fake))`` (logits [N] and [M]) -> scalar."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-E log D(G(z))`` (logits [M]) -> scalar."""
    return F.softplus(-fake_logits).mean()


def reconstruction_distance(x: torch.Tensor, x_rec: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Geometric regularizer's ``d(x, G(E(x)))`` (1612.02136 §3.1: pixel-wise L2), averaged over the batch.

    ``reduction="mean"`` (our choice): the squared error is averaged over the pixels (coordinates),
    so ``lambda1`` weighs a per-pixel error and keeps one meaning at every image size. §4.1 sets
    lambda1 = 0.2 and lambda2 = 0.4 beside a GAN loss of ~0.7: with the per-pixel mean (at most a few
    units for images in [-1, 1]) the regularizers and the GAN term are of one order, which is what
    weights of that size suggest. Summed over pixels (``reduction="sum"``) the same lambda1 weighs the
    reconstruction 4-9 on 8x8 digits and ~180 on 32x32 MNIST, and G becomes an autoencoder's decoder
    with the GAN term a rounding error. The paper states neither; the sum is kept as an ablation
    (arm ``reggan_sum``). Measured on the default digits run (seed 0): with the mean, G(E(x)) barely
    reconstructs (d ~1.0 per pixel after training), with the sum it does (0.09 per pixel) and leaves
    fewer classes under-generated (claim ``gan_reggan_reduction_digits``). On 2-D points the two
    differ by a factor of 2.
    """
    sq = (x - x_rec).flatten(1).pow(2)  # N x pixels
    if reduction == "mean":
        return sq.mean()
    if reduction == "sum":
        return sq.sum(1).mean()
    raise ValueError(f"unknown reduction {reduction!r} (expected mean or sum)")


def mode_regularizer(rec_logits: torch.Tensor, *, corrected: bool = True) -> torch.Tensor:
    """Mode regularizer on ``D(G(E(x)))`` as a term to *minimise*.

    corrected=True (ours): ``-E log D(G(E(x)))`` — decreasing it raises D(G(E(x))).
    corrected=False (eqs. 1-2 as printed): ``+E log D(G(E(x)))`` — decreasing it lowers D(G(E(x))).
    """
    neg_log_d = F.softplus(-rec_logits).mean()
    return neg_log_d if corrected else -neg_log_d


def reggan_regularizer(
    x: torch.Tensor,
    x_rec: torch.Tensor,
    rec_logits: torch.Tensor,
    *,
    lambda1: float,
    lambda2: float,
    corrected: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """``lambda1 d(x, G(E(x))) + lambda2 * mode_regularizer`` — the part of T_G shared with T_E
    (1612.02136 eqs. 1-2; E minimises exactly this, G minimises it plus the GAN loss);
    ``reduction`` of d as in :func:`reconstruction_distance`."""
    rec = reconstruction_distance(x, x_rec, reduction=reduction)
    return lambda1 * rec + lambda2 * mode_regularizer(rec_logits, corrected=corrected)


def mdgan_manifold_loss(x: torch.Tensor, x_rec: torch.Tensor, rec_logits: torch.Tensor, *, lam: float,
                        reduction: str = "sum") -> torch.Tensor:
    """MDGAN manifold step for G and E (1612.02136 App. A): ascend ``lam log D1(G(E(x))) - ||x - G(E(x))||^2``,
    i.e. minimise ``d + lam * (-log D1(G(E(x))))``. (§3.3 puts the weight on d instead; App. A's
    placement is used, with the corrected sign as for Reg-GAN.) Unlike Reg-GAN's lambda-weighted d, App. A
    writes the unweighted squared norm, so d is summed over pixels here: the manifold step is a
    reconstruction with a realism term. With the per-pixel mean the D1 term (weight 1) outweighs d
    ~10x on 8x8 digits and G(E(x)) collapsed to one class in every seed we ran."""
    return reconstruction_distance(x, x_rec, reduction=reduction) + lam * F.softplus(-rec_logits).mean()


def mgan_classifier_loss(class_logits: torch.Tensor, generator_ids: torch.Tensor) -> torch.Tensor:
    """``-sum_k pi_k E_{x~G_k} log C_k(x)`` with pi uniform and equal samples per generator
    (1708.02556 eq. 2): the mean cross-entropy of C on fakes labelled by their generator index."""
    return F.cross_entropy(class_logits, generator_ids)
