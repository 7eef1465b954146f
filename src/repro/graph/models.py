"""A small context-prediction network (Doersch et al. 2015, the TI paper's [9]) for clustering features.

TI (Sec. 3.2) embeds every mined patch with pool5 of a VGG16 trained on unlabelled ImageNet by
context prediction (predict which of the 8 neighbouring positions a second patch came from) and
clusters on cosine distance; with 96 px input pool5 is 3x3x512 = 4608-d.  No pretrained weights
are available offline, so we train a small version of that net in the pipeline on the mined
patches themselves (a deviation, noted in the claims): a shared conv trunk embeds the centre and
the neighbour sub-patch, a small MLP on the two embeddings predicts the 8-way relative position.
The clustering feature of a whole patch is the trunk's last conv map average-pooled to a
``grid x grid`` map and flattened (our "pool5", ``grid**2 * 2*width`` dims).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

N_POSITIONS = 8  # the 8 neighbours of the centre cell in a 3x3 grid (Doersch et al. 2015, Fig. 2)


class ContextNet(nn.Module):
    """Siamese relative-position classifier; ``features`` gives the pooled trunk map."""

    def __init__(self, *, width: int = 32, embed: int = 64) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(2 * width, embed), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Linear(2 * embed, 2 * embed), nn.ReLU(inplace=True), nn.Linear(2 * embed, N_POSITIONS))

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(F.adaptive_avg_pool2d(self.trunk(x), 1))  # [B, embed]

    def forward(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        """Logits [B, 8] of the neighbour's position; inputs [B,3,s,s] (mean-subtracted sub-patches)."""
        return self.head(torch.cat([self._embed(centre), self._embed(neighbour)], dim=1))

    @torch.no_grad()
    def features(self, x: torch.Tensor, grid: int) -> torch.Tensor:
        """Pooled trunk map of whole patches: [B,3,S,S] -> [B, 2*width*grid*grid]."""
        return F.adaptive_avg_pool2d(self.trunk(x), grid).flatten(1)


def context_net(*, width: int = 32, embed: int = 64) -> ContextNet:
    """Builder of the small context-prediction net (keyword-only, as every builder here)."""
    return ContextNet(width=width, embed=embed)
