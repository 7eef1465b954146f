"""The RPN's proposal filtering with a greedy NMS that stops once the post-NMS budget is full.

FPN (1612.03144) Sec. 4.1 keeps the top-scoring anchors' boxes after NMS at IoU 0.7, and Sec. 4.2 feeds a
fixed number of them (1000 at test) to the head. torchvision's ``RegionProposalNetwork.filter_proposals``
runs greedy NMS to the end over every candidate (up to ``pre_nms_top_n``, 6000 for a single-map RPN)
and then keeps the first ``post_nms_top_n``; on a CPU that full pass was 18% of a C4 training step.
Greedy NMS decides boxes in score order and a box is kept iff no *kept* higher-scoring box overlaps it
by more than the threshold, so its first k keeps do not depend on the boxes after the k-th keep.
:func:`nms_top_k` therefore processes the score-sorted boxes in blocks: a block's boxes that overlap a
box kept so far are dropped, torchvision's ``nms`` resolves the rest within the block, and it stops
once k boxes are kept. Per level (``batched_nms_top_k``), each level's first k keeps are the only ones
that can reach the image's top k, so the result is torchvision's, with two exceptions of
implementation detail: (i) equal scores are ordered by candidate index (torchvision's merge sort across
levels is unstable, so its order of equal-scored proposals is arbitrary), and (ii) levels are always
suppressed one by one (torchvision offsets the boxes of up to 1000 candidates into disjoint ranges
instead, which can move an IoU by a rounding error).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import box_iou, clip_boxes_to_image, nms, remove_small_boxes


def nms_top_k(boxes: Tensor, scores: Tensor, iou_threshold: float, k: int) -> Tensor:
    """The first ``k`` indices ``torchvision.ops.nms(boxes, scores, iou_threshold)`` returns.

    Ties in ``scores`` are taken in index order, as torchvision's kernel does (a stable sort).
    """
    order = torch.sort(scores, descending=True, stable=True)[1]
    kept = order[:0]
    block = max(int(k), 64)
    for start in range(0, order.numel(), block):
        if kept.numel() >= k:
            break
        idx = order[start:start + block]
        if kept.numel():
            idx = idx[~(box_iou(boxes[idx], boxes[kept]) > iou_threshold).any(dim=1)]
        # strictly decreasing stand-in scores keep the block in the global order inside torchvision's nms
        rank = torch.arange(idx.numel(), 0, -1, dtype=torch.float32, device=idx.device)
        kept = torch.cat([kept, idx[nms(boxes[idx], rank, iou_threshold)]])
    return kept[:k]


def batched_nms_top_k(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, k: int) -> Tensor:
    """NMS within each value of ``idxs`` (pyramid level), then the ``k`` best kept boxes by score."""
    keep = [where[nms_top_k(boxes[where], scores[where], iou_threshold, k)]
            for where in (torch.where(idxs == i)[0] for i in torch.unique(idxs))]
    if not keep:
        return idxs.new_zeros(0)
    keep = torch.sort(torch.cat(keep))[0]  # candidate order, so equal scores stay in index order
    return keep[torch.sort(scores[keep], descending=True, stable=True)[1]][:k]


class TopKRegionProposalNetwork(RegionProposalNetwork):
    """torchvision's RPN whose proposal filtering stops NMS at the post-NMS budget (module doc)."""

    @classmethod
    def from_rpn(cls, rpn: RegionProposalNetwork) -> TopKRegionProposalNetwork:
        """The same RPN (its modules, matcher, sampler, coder and budgets) with this filtering."""
        return cls(rpn.anchor_generator, rpn.head, rpn.proposal_matcher.high_threshold,
                   rpn.proposal_matcher.low_threshold, rpn.fg_bg_sampler.batch_size_per_image,
                   rpn.fg_bg_sampler.positive_fraction, rpn._pre_nms_top_n, rpn._post_nms_top_n, rpn.nms_thresh,
                   rpn.score_thresh)

    def filter_proposals(self, proposals: Tensor, objectness: Tensor, image_shapes: list[tuple[int, int]],
                         num_anchors_per_level: list[int]) -> tuple[list[Tensor], list[Tensor]]:
        """torchvision's ``filter_proposals`` (top-n per level, clip, drop small and low-scoring boxes,
        NMS per level, keep ``post_nms_top_n``) with :func:`batched_nms_top_k` as its NMS."""
        num_images = proposals.shape[0]
        objectness = objectness.detach().reshape(num_images, -1)
        levels = torch.cat([torch.full((n,), i, dtype=torch.int64, device=proposals.device)
                            for i, n in enumerate(num_anchors_per_level)])
        levels = levels.reshape(1, -1).expand_as(objectness)
        top_n_idx = self._get_top_n_idx(objectness, num_anchors_per_level)
        batch_idx = torch.arange(num_images, device=proposals.device)[:, None]
        objectness, levels = objectness[batch_idx, top_n_idx], levels[batch_idx, top_n_idx]
        proposals = proposals[batch_idx, top_n_idx]
        final_boxes, final_scores = [], []
        for boxes, scores, lvl, img_shape in zip(proposals, torch.sigmoid(objectness), levels, image_shapes):
            boxes = clip_boxes_to_image(boxes, img_shape)
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = batched_nms_top_k(boxes, scores, lvl, self.nms_thresh, self.post_nms_top_n())
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores
