"""The ranking loss of Transitive Invariance (arXiv 1708.02901, Sec. 4, after Wang & Gupta 2015 [61]).

    D(A, B) = 1 - F(A).F(B) / (||F(A)|| ||F(B)||)                         (cosine distance, Eq. 1)
    L(X, X+, X-) = max(0, D(X, X+) - D(X, X-) + m),   m = 0.5             (ranking loss, Eq. 2)

X, X+ is a positive pair of the graph (intra, inter or transitive) and X- a distractor. The paper
says how X- is chosen: "given the set of related samples {A, B, A', B'} ... and a random distractor
sample C' from another parent cluster" (Sec. 4, Fig. 6), and "For each pair we sample the third
distractor patch from a different 'parent cluster' in the same mini-batch" (Sec. 5). So ``random``
(uniform among the other-parent patches of the mini-batch) is the default; :func:`pick_negatives` also
offers ``hard`` (the closest valid candidate: the largest loss) and ``mixed`` (hard with probability
``hard_fraction``, random otherwise, as [61]'s Caffe code RankHardLoss mixes them), which the
``transitive_mixed`` pretraining arm uses as an ablation. Parent ``-1`` (a patch in no kept cluster) counts as one cluster of its
own, so two such patches are never each other's negative (conservative).

Every function is pure (tensors in, tensors out); the device is the inputs'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["NEGATIVE_MODES", "cosine_distance", "pairwise_cosine_distance", "pick_negatives", "ranking_loss",
           "triplet_step_loss"]

NEGATIVE_MODES = ("hard", "random", "mixed")


def cosine_distance(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Row-wise D = 1 - cos(x, y) (Eq. 1): [B, E], [B, E] -> [B], in [0, 2]."""
    return 1.0 - F.cosine_similarity(x, y, dim=1, eps=eps)  # [B]


def pairwise_cosine_distance(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """All-pairs D = 1 - cos: [B, E], [M, E] -> [B, M]."""
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(eps)  # [B, E]
    yn = y / y.norm(dim=1, keepdim=True).clamp_min(eps)  # [M, E]
    return 1.0 - xn @ yn.T  # [B, M]


def ranking_loss(d_pos: torch.Tensor, d_neg: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Per-triplet max(0, D(X,X+) - D(X,X-) + m) (Eq. 2): [T], [T] -> [T]."""
    return torch.clamp(d_pos - d_neg + margin, min=0.0)  # [T]


def pick_negatives(dist: torch.Tensor, anchor_parent: torch.Tensor, cand_parent: torch.Tensor, *, mode: str = "random",
                   hard_fraction: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each anchor, the index of its distractor among the batch's candidates, or -1 if none is valid.

    dist [B, M] anchor-to-candidate distances (only their order matters; no gradient needed);
    anchor_parent [B], cand_parent [M] parent clusters. A candidate is valid iff its parent differs
    from the anchor's. ``generator`` (CPU) drives the random choices, so a run is reproducible.
    """
    if mode not in NEGATIVE_MODES:
        raise ValueError(f"negatives: unknown mode {mode!r} (one of {NEGATIVE_MODES})")
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"negatives: hard_fraction must be in [0, 1], got {hard_fraction}")
    B, M = dist.shape
    valid = cand_parent.view(1, M) != anchor_parent.view(B, 1)  # [B, M]
    has = valid.any(dim=1)  # [B]
    hard = dist.detach().masked_fill(~valid, float("inf")).argmin(dim=1)  # [B] closest valid = hardest
    noise = torch.rand(B, M, generator=generator).to(dist.device)  # [B, M]
    rand = noise.masked_fill(~valid, -1.0).argmax(dim=1)  # [B] uniform among the valid
    if mode == "hard":
        pick = hard
    elif mode == "random":
        pick = rand
    else:
        use_hard = (torch.rand(B, generator=generator) < hard_fraction).to(dist.device)  # [B]
        pick = torch.where(use_hard, hard, rand)
    return torch.where(has, pick, torch.full_like(pick, -1))  # [B]


def triplet_step_loss(emb_a: torch.Tensor, emb_b: torch.Tensor, parent: torch.Tensor, *, margin: float = 0.5,
                      mode: str = "random", hard_fraction: float = 0.5,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The mini-batch loss: anchors X = a, positives X+ = b, distractors among all 2B batch images.

    emb_a, emb_b [B, E] embeddings of the pairs' two patches; parent [B] the pairs' parent clusters
    (both patches of a pair share it). Returns the mean loss over the triplets that have a valid
    distractor, and detached statistics (loss, active fraction, mean D+ and D-, triplet count).
    """
    cand = torch.cat([emb_a, emb_b])  # [2B, E]
    cand_parent = torch.cat([parent, parent])  # [2B]
    with torch.no_grad():
        dist = pairwise_cosine_distance(emb_a, cand)  # [B, 2B]
    neg = pick_negatives(dist, parent, cand_parent, mode=mode, hard_fraction=hard_fraction, generator=generator)
    keep = neg >= 0  # [B]
    if not bool(keep.any()):  # every pair of this batch has the same parent: nothing to learn from it
        zero = (emb_a.sum() + emb_b.sum()) * 0.0
        return zero, {"loss": 0.0, "active": 0.0, "d_pos": float("nan"), "d_neg": float("nan"), "triplets": 0}
    d_pos = cosine_distance(emb_a[keep], emb_b[keep])  # [T]
    d_neg = cosine_distance(emb_a[keep], cand[neg[keep]])  # [T]
    per = ranking_loss(d_pos, d_neg, margin)  # [T]
    loss = per.mean()
    stats = {"loss": float(loss.detach()), "active": float((per.detach() > 0).float().mean()),
             "d_pos": float(d_pos.detach().mean()), "d_neg": float(d_neg.detach().mean()), "triplets": int(keep.sum())}
    return loss, stats
