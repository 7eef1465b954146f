"""RoIAlign (Mask R-CNN, arXiv 1703.06870 Sec. 3) with torchvision's forward and a fast exact CPU backward.

FPN (1612.03144 Sec. 4.2) pools RoIs with RoIPool; ``pooler: roi_align`` uses RoIAlign instead. The
forward here *is* ``torch.ops.torchvision.roi_align`` (same numbers, same arguments). Only the CPU
backward differs: torchvision's recomputes the bilinear weights of every sample for every channel in a
scalar loop; this one uses that RoIAlign is separable. A bin's value is

    out[r, c, ph, pw] = sum_y sum_x Wy[r, ph, y] * Wx[r, pw, x] * X[b_r, c, y, x],

where Wy (Wx) sums, over the bin's sampling rows (columns), the 1-D linear-interpolation weights,
divided by the grid size: torchvision's bilinear weight of a sample is hy * hx (a product of 1-D
weights), its count is grid_h * grid_w, and its boundary rules (a sample is dropped if y < -1 or
y > H, y is clamped to 0 and the low index to H - 1) act on each axis alone
(torchvision/csrc/ops/cpu/roi_align_kernel.cpp and roi_align_common.h). Hence

    grad_X[b] += Wy[r]^T grad_out[r] Wx[r]   for every RoI r of image b,

two batched matmuls over each RoI's row/column window (as wide as the widest RoI's, so large maps
such as P2 stay cheap) and one ``index_add_``, in chunks of RoIs. The sample positions are computed
as the kernel does, so it is exact up to float rounding (summation order). On other devices the
backward is torchvision's own kernel.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn.modules.utils import _pair
from torchvision.ops._utils import check_roi_boxes_shape, convert_boxes_to_roi_format

# The CPU backward runs over chunks of RoIs whose largest temporary holds at most this many elements
# (1 MiB in float32): it stays in cache, memory stays bounded for big maps, and no temporary is large
# enough to be mmap-ed and page-faulted afresh on every call (bench/detect_throughput.py measures it).
_CHUNK_ELEMENTS = 1 << 18


def _axis_weights(start: Tensor, length: Tensor, n_bins: int, sampling_ratio: int,
                  size: int) -> tuple[Tensor, Tensor]:
    """Per-RoI 1-D RoIAlign weights along one axis: (R x n_bins x window weights, R window starts).

    ``start``/``length`` are the RoI's start and (clamped) length on the feature map, in the input's
    dtype; the sample positions are computed in that dtype in torchvision's order of operations, so
    they are the kernel's positions bit for bit. Each weight already carries the 1/grid of this axis.
    """
    bin_size = length / n_bins
    if sampling_ratio > 0:
        grid = torch.full_like(start, sampling_ratio, dtype=torch.long)
    else:  # adaptive: ceil(roi_length / pooled_length) samples per bin (0 for empty RoIs)
        grid = torch.ceil(length / n_bins).clamp(min=0).long()
    n_samples = int(grid.max()) if grid.numel() else 0
    n_rois = start.shape[0]
    if n_samples == 0:
        return start.new_zeros(n_rois, n_bins, 1), grid.new_zeros(n_rois)
    dtype = start.dtype
    bins = torch.arange(n_bins, dtype=dtype, device=start.device)[None, :, None]
    offs = torch.arange(n_samples, dtype=dtype, device=start.device)[None, None, :] + 0.5
    grid_f = grid.clamp(min=1).to(dtype)[:, None, None]
    b = bin_size[:, None, None]
    # y = roi_start + ph * bin_size + (iy + .5) * bin_size / grid   (R x n_bins x n_samples)
    pos = (start[:, None, None] + bins * b) + (offs * b) / grid_f
    valid = (pos >= -1.0) & (pos <= size)
    valid &= torch.arange(n_samples, device=start.device)[None, None, :] < grid[:, None, None]
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    edge = low >= size - 1
    low = torch.where(edge, size - 1, low)
    high = torch.where(edge, size - 1, low + 1)
    frac = torch.where(edge, torch.zeros_like(pos), pos - low)
    scale = valid.to(dtype) / grid_f
    w_high = frac * scale
    w_low = (1 - frac) * scale
    # window: from the lowest to the highest index any valid sample of the RoI touches
    big = torch.iinfo(torch.long).max
    lo = torch.where(valid, low, big).amin(dim=(1, 2))
    hi = torch.where(valid, high, -1).amax(dim=(1, 2))
    lo = torch.where(hi >= 0, lo, 0)
    hi = torch.where(hi >= 0, hi, 0)
    win = int((hi - lo).max()) + 1
    first = lo.clamp(max=size - win)
    first_ = first[:, None, None]
    low = torch.where(valid, low - first_, 0)
    high = torch.where(valid, high - first_, 0)
    weights = start.new_zeros(n_rois, n_bins, win)
    weights.scatter_add_(2, low, w_low)
    weights.scatter_add_(2, high, w_high)
    return weights, first


def _extent(rois: Tensor, spatial_scale: float, aligned: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(start_y, height, start_x, width) of each RoI on the feature map, as torchvision computes them."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, i] * spatial_scale - offset for i in range(1, 5))
    w, h = x2 - x1, y2 - y1
    if not aligned:  # malformed RoIs are forced to 1 x 1
        w, h = w.clamp(min=1.0), h.clamp(min=1.0)
    return y1, h, x1, w


def roi_align_backward_cpu(grad: Tensor, rois: Tensor, spatial_scale: float, output_size: tuple[int, int],
                           input_shape: tuple[int, int, int, int], sampling_ratio: int, aligned: bool) -> Tensor:
    """The gradient of torchvision's ``roi_align`` w.r.t. its input, computed separably (see module doc).

    ``grad``: R x C x PH x PW. Returns ``input_shape`` (N x C x H x W), in ``grad``'s dtype.
    """
    n, c, height, width = input_shape
    ph, pw = output_size
    out = grad.new_zeros(n * height * width, c)  # (image, y, x) rows of C: one index_add_ per chunk
    if grad.numel() == 0 or out.numel() == 0:
        return out.view(n, height, width, c).permute(0, 3, 1, 2).contiguous()
    rois = rois.to(grad.dtype)
    y0, h, x0, w = _extent(rois, spatial_scale, aligned)
    wy, first_y = _axis_weights(y0, h, ph, sampling_ratio, height)  # R x PH x Hw
    wx, first_x = _axis_weights(x0, w, pw, sampling_ratio, width)  # R x PW x Ww
    hw, ww = wy.shape[2], wx.shape[2]
    image = rois[:, 0].long()
    ys = torch.arange(hw, device=grad.device)
    xs = torch.arange(ww, device=grad.device)
    per_roi = c * max(ph * pw, hw * pw, hw * ww)  # elements of the largest temporary, per RoI
    step = max(1, _CHUNK_ELEMENTS // per_roi)
    for s in range(0, rois.shape[0], step):
        g = grad[s:s + step]
        r = g.shape[0]
        gq = g.permute(0, 3, 2, 1)  # R x PW x PH x C (a view; channels last)
        t = torch.matmul(wy[s:s + step, None].transpose(2, 3), gq)  # R x PW x Hw x C: rows contracted
        v = torch.bmm(wx[s:s + step].transpose(1, 2), t.reshape(r, pw, hw * c))  # R x Ww x (Hw C): columns
        col = first_x[s:s + step, None] + xs  # R x Ww
        row = image[s:s + step, None] * height + first_y[s:s + step, None] + ys  # R x Hw
        idx = (row[:, None, :] * width + col[:, :, None]).reshape(-1)  # (R Ww Hw) rows of `out`
        out.index_add_(0, idx, v.view(-1, c))
    return out.view(n, height, width, c).permute(0, 3, 1, 2).contiguous()


class _RoIAlign(torch.autograd.Function):
    """torchvision's RoIAlign forward; CPU backward by :func:`roi_align_backward_cpu`."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, rois: Tensor, spatial_scale: float, output_size: tuple[int, int],
                sampling_ratio: int, aligned: bool) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.args = (spatial_scale, output_size, tuple(input.shape), sampling_ratio, aligned)
        return torch.ops.torchvision.roi_align(input, rois, spatial_scale, output_size[0], output_size[1],
                                               sampling_ratio, aligned)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (rois,) = ctx.saved_tensors
        spatial_scale, output_size, shape, sampling_ratio, aligned = ctx.args
        if grad.device.type == "cpu":
            gi = roi_align_backward_cpu(grad, rois, spatial_scale, output_size, shape, sampling_ratio, aligned)
        else:
            gi = torch.ops.torchvision._roi_align_backward(grad, rois, spatial_scale, output_size[0], output_size[1],
                                                           *shape, sampling_ratio, aligned)
        return gi, None, None, None, None, None


def roi_align(input: Tensor, boxes: Tensor | list[Tensor], output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """``torchvision.ops.roi_align`` (same arguments and outputs) with the separable CPU backward."""
    check_roi_boxes_shape(boxes)
    rois = boxes if isinstance(boxes, Tensor) else convert_boxes_to_roi_format(boxes)
    return _RoIAlign.apply(input, rois, float(spatial_scale), _pair(output_size), int(sampling_ratio), bool(aligned))
