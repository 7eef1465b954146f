"""The context-prediction arm: the detection backbone trained on Doersch et al.'s 8-way task (TI's [9]).

TI (arXiv 1708.02901, Sec. 6): "We use the network pre-trained in [9] to initialize our convolutional
layers", and Tables 1, 3 and 4 list that network as the "Context" row. Here the *same backbone* the
ranking arms train (``repro.detect.backbone``) learns the task the graph stage's context net learns
(predict which of the 8 neighbouring cells a second sub-patch came from), on the same mined patches,
with the graph stage's sampler (:func:`repro.graph.features.sample_context_batch`: 3x3 grid with gaps
and jitter, each sub-patch mean-subtracted per channel). Its backbone is the ``context`` arm, and the
ranking arms start from it (``pretrain.init: context``).

Decisions (the paper's context net works on 96 px sub-patches of ImageNet images; ours are S/4 of an
S px mined patch): each sub-patch is resized (bilinear) to the mined patch size S, so the backbone
sees the input size the ranking arms train on, and divided by the ImageNet std (the detector's
input scale, :func:`repro.pretrain.models.normalize`, after Doersch's per-patch mean removal). Both
towers share the backbone; their globally pooled C5 features are concatenated (late fusion as in
Doersch et al. Fig. 3) into fc -> ReLU -> fc(8). It trains with the graph stage's loop
(:func:`repro.graph.engine.train_context`: batches drawn from ``(seed, step)``, checkpoints with resume)
and the ranking arms' optimizer (``pretrain.optimizer``), for ``pretrain.steps`` steps of
``pretrain.batch`` sub-patch pairs. It runs as one process (under DDP every rank trains the same copy
and rank 0 writes).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from repro.pretrain.models import IMAGENET_STD, c5_map

N_POSITIONS = 8  # the 8 neighbours of the centre cell (Doersch et al. 2015, Fig. 2)


class ContextPredictor(nn.Module):
    """Siamese relative-position classifier on a detection backbone: pooled C5 of both sub-patches -> 8 logits."""

    def __init__(self, backbone: nn.Module, *, hidden: int, size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.size = int(size)
        c5 = int(backbone.channels[-1])
        self.head = nn.Sequential(nn.Linear(2 * c5, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, N_POSITIONS))

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-removed sub-patches [B,3,s,s] (/255) -> pooled C5 [B, C5] at the mined patch size."""
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = F.interpolate(x / std, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return c5_map(self.backbone, x).mean(dim=(2, 3))

    def forward(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        """Logits [B, 8] of the neighbour's position."""
        both = self._embed(torch.cat([centre, neighbour]))  # one batched pass: BatchNorm sees both towers
        return self.head(torch.cat(both.chunk(2), dim=1))
