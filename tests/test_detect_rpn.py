"""The RPN's early-stopping NMS gives torchvision's proposals (FPN Sec. 4.1: NMS at 0.7, a fixed budget)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import nms

from repro.detect.rpn import TopKRegionProposalNetwork, batched_nms_top_k, nms_top_k


def _boxes(n: int, gen: torch.Generator, size: float = 256.0) -> torch.Tensor:
    """Clustered boxes (many overlaps, as an RPN's candidates around objects)."""
    centres = torch.rand(12, 2, generator=gen) * size
    c = centres[torch.randint(0, 12, (n,), generator=gen)] + torch.randn(n, 2, generator=gen) * 8
    wh = 8 + torch.rand(n, 2, generator=gen) * 64
    return torch.cat([c - wh / 2, c + wh / 2], dim=1)


@pytest.mark.parametrize("k", [1, 50, 300, 1000, 5000])
def test_nms_top_k_is_the_head_of_torchvision_nms(k: int) -> None:
    gen = torch.Generator().manual_seed(k)
    boxes = _boxes(3840, gen)
    scores = torch.rand(3840, generator=gen)
    assert torch.equal(nms_top_k(boxes, scores, 0.7, k), nms(boxes, scores, 0.7)[:k])
    tied = torch.where(scores > 0.5, 1.0, scores)  # saturated scores: many ties, taken in index order
    assert torch.equal(nms_top_k(boxes, tied, 0.7, k), nms(boxes, tied, 0.7)[:k])


def _rpns(levels: int, pre: int, post: int) -> tuple[RegionProposalNetwork, TopKRegionProposalNetwork]:
    anchors = AnchorGenerator(((32,),) * levels, ((0.5, 1.0, 2.0),) * levels)
    ref = RegionProposalNetwork(anchors, RPNHead(8, 3), 0.7, 0.3, 256, 0.5, dict(training=pre, testing=pre),
                                dict(training=post, testing=post), 0.7)
    return ref, TopKRegionProposalNetwork.from_rpn(ref)


@pytest.mark.parametrize(("sizes", "pre", "post"), [((3840,), 6000, 300), ((3840,), 6000, 1000),
                                                     ((3000, 1200, 300, 90), 1000, 300)])
def test_filter_proposals_matches_torchvision(sizes: tuple[int, ...], pre: int, post: int) -> None:
    gen = torch.Generator().manual_seed(len(sizes) + post)
    ref, ours = _rpns(len(sizes), pre, post)
    assert ours.head is ref.head and ours.post_nms_top_n() == post and ours.nms_thresh == ref.nms_thresh
    n = sum(sizes)
    proposals = torch.stack([_boxes(n, gen) for _ in range(2)])
    objectness = torch.randn(2 * n, 1, generator=gen) * 4
    shapes = [(256, 256), (256, 200)]
    want_boxes, want_scores = ref.filter_proposals(proposals, objectness, shapes, list(sizes))
    got_boxes, got_scores = ours.filter_proposals(proposals, objectness, shapes, list(sizes))
    for w, g, ws, gs in zip(want_boxes, got_boxes, want_scores, got_scores):
        assert len(g) == post and torch.equal(ws, gs)  # the same scores in the same order
        # the same boxes; sigmoid scores tie near 1 in float32, and torchvision orders ties arbitrarily
        assert sorted(zip(ws.tolist(), w.tolist())) == sorted(zip(gs.tolist(), g.tolist()))
        distinct = torch.cat([gs[1:] != gs[:-1], torch.tensor([True])]) & torch.cat([torch.tensor([True]),
                                                                                    gs[1:] != gs[:-1]])
        assert torch.equal(w[distinct], g[distinct])


def test_batched_nms_top_k_of_nothing() -> None:
    empty = torch.zeros(0, 4)
    assert batched_nms_top_k(empty, torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.7, 10).numel() == 0
