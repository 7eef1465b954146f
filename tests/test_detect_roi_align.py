"""The separable RoIAlign backward (repro.detect.roi_align) against torchvision's kernel.

RoIAlign: Mask R-CNN (arXiv 1703.06870 Sec. 3); FPN (1612.03144 Sec. 4.2) pools with RoIPool and
``pooler: roi_align`` swaps in RoIAlign. The forward must be torchvision's to the bit, the gradient
torchvision's up to float32 rounding, and a detector step must not notice the swap.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import roi_align as tv_roi_align

from repro.detect import roi_align as ra
from repro.detect.backbone import tiny_resnet
from repro.detect.models import DetectorSettings, FastMultiScaleRoIAlign, build_detector, set_sampling_keys

SMALL = DetectorSettings(min_size=128, max_size=128, fpn_channels=16, anchor_sizes=(8, 16, 32, 64, 128),
                         representation_size=32, rpn_post_nms_top_n_test=200, box_batch_size_per_image=16,
                         pooler="roi_align")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rois(n_rois: int, n_images: int, height: int, width: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Boxes in image pixels: tiny to huge (log-uniform sides), partly or fully off the map, a few reversed."""
    size = torch.tensor([width, height]) / scale
    centre = torch.rand(n_rois, 2, generator=gen) * size * 1.6 - 0.3 * size  # some beyond the map
    side = torch.exp(torch.rand(n_rois, 2, generator=gen) * 8 - 4) * size  # 0.02 .. 55 map sizes
    xy1, xy2 = centre - side / 2, centre + side / 2
    flip = torch.rand(n_rois, generator=gen) < 0.1  # malformed: x2 < x1, y2 < y1
    xy1, xy2 = torch.where(flip[:, None], xy2, xy1), torch.where(flip[:, None], xy1, xy2)
    image = torch.randint(0, n_images, (n_rois, 1), generator=gen).float()
    return torch.cat([image, xy1, xy2], dim=1)


def _grads(fn, x: torch.Tensor, rois: torch.Tensor, out, scale: float, ratio: int, aligned: bool,
           grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_()
    y = fn(x, rois, out, scale, ratio, aligned)
    (g,) = torch.autograd.grad(y, x, grad_out)
    return y, g


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("ratio", [2, 0])
@pytest.mark.parametrize("out", [7, 14, (5, 9)])
def test_forward_identical_and_gradient_equals_torchvision(aligned: bool, ratio: int, out) -> None:
    gen = torch.Generator().manual_seed(17 + 2 * ratio + int(aligned))
    for height, width, scale in [(16, 16, 1 / 16), (64, 40, 1 / 4), (8, 8, 1 / 32), (5, 1, 1.0), (1, 3, 0.5)]:
        x = torch.randn(3, 6, height, width, generator=gen)
        rois = _rois(60, 3, height, width, scale, gen)
        oh, ow = (out, out) if isinstance(out, int) else out
        grad_out = torch.randn(60, 6, oh, ow, generator=gen)
        y_ref, g_ref = _grads(tv_roi_align, x, rois, out, scale, ratio, aligned, grad_out)
        y, g = _grads(ra.roi_align, x, rois, out, scale, ratio, aligned, grad_out)
        assert torch.equal(y, y_ref)  # the forward is torchvision's kernel
        scale_g = g_ref.abs().max().item() + 1.0  # many RoIs sum on small maps: float32 noise grows with |g|
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-5 * scale_g)


def test_float64_gradient_matches_torchvision_to_rounding_and_list_of_boxes() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 12, 20, generator=gen, dtype=torch.float64)
    rois = _rois(40, 2, 12, 20, 1 / 8, gen).double()
    grad_out = torch.randn(40, 4, 7, 7, generator=gen, dtype=torch.float64)
    for ratio in (2, 0):
        _, g_ref = _grads(tv_roi_align, x, rois, 7, 1 / 8, ratio, False, grad_out)
        _, g = _grads(ra.roi_align, x, rois, 7, 1 / 8, ratio, False, grad_out)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    boxes = [rois[rois[:, 0] == i, 1:] for i in range(2)]  # torchvision's list-of-boxes form
    order = torch.cat([torch.where(rois[:, 0] == i)[0] for i in range(2)])
    assert torch.equal(ra.roi_align(x, boxes, 7, 1 / 8, 2), tv_roi_align(x, boxes, 7, 1 / 8, 2))
    _, g_list = _grads(lambda *a: ra.roi_align(a[0], boxes, *a[2:]), x, rois, 7, 1 / 8, 2, False, grad_out[order])
    _, g_ref = _grads(tv_roi_align, x, rois, 7, 1 / 8, 2, False, grad_out)
    torch.testing.assert_close(g_list, g_ref, rtol=1e-12, atol=1e-12)


def test_gradcheck_float64_tiny() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.2, 4.1, 3.7], [1, -1.5, 2.0, 3.0, 6.5], [1, 2.2, 1.1, 2.4, 1.3],
                         [0, 5.5, 4.8, 9.0, 9.0]], dtype=torch.float64)
    for ratio, aligned in ((2, False), (0, True), (3, True)):
        assert torch.autograd.gradcheck(lambda t: ra.roi_align(t, rois, (3, 2), 1.0, ratio, aligned), (x,))


def test_chunked_backward_and_empty_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    rois = _rois(50, 2, 16, 16, 1 / 16, gen)
    grad_out = torch.randn(50, 3, 14, 14, generator=gen)
    _, g_ref = _grads(tv_roi_align, x, rois, 14, 1 / 16, 2, False, grad_out)
    monkeypatch.setattr(ra, "_CHUNK_ELEMENTS", 1)  # one RoI per chunk
    _, g = _grads(ra.roi_align, x, rois, 14, 1 / 16, 2, False, grad_out)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-5 * (g_ref.abs().max().item() + 1))
    _, g0 = _grads(ra.roi_align, x, rois[:0], 14, 1 / 16, 2, False, grad_out[:0])
    assert torch.equal(g0, torch.zeros_like(x))


def _step(model, images, targets, keys):
    torch.manual_seed(0)
    set_sampling_keys(model, keys)
    model.zero_grad()
    losses = model(images, [dict(t) for t in targets])
    loss = sum(losses.values())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["fpn", "c4"])
def test_detector_step_same_loss_and_gradients_as_torchvision_pooler(name: str) -> None:
    torch.manual_seed(0)
    model = build_detector(name, body=tiny_resnet(width=8), num_classes=3, settings=SMALL).train()
    pooler = model.roi_heads.box_roi_pool
    assert isinstance(pooler, FastMultiScaleRoIAlign)
    reference = copy.deepcopy(model)
    reference.roi_heads.box_roi_pool = MultiScaleRoIAlign(
        pooler.featmap_names, pooler.output_size, pooler.sampling_ratio,
        canonical_scale=pooler.canonical_scale, canonical_level=pooler.canonical_level)
    gen = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 128, 128, generator=gen) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 120.0, 50.0]]),
                "labels": torch.tensor([1, 2])},
               {"boxes": torch.tensor([[5.0, 5.0, 120.0, 110.0]]), "labels": torch.tensor([2])}]
    keys = [(0, 0, 0), (0, 0, 1)]
    loss, grads = _step(model, images, targets, keys)
    loss_ref, grads_ref = _step(reference, images, targets, keys)
    assert torch.equal(loss, loss_ref)  # same forward to the bit
    assert grads.keys() == grads_ref.keys() and len(grads) > 10
    for n, g in grads.items():
        torch.testing.assert_close(g, grads_ref[n], rtol=1e-5, atol=1e-5 * (grads_ref[n].abs().max().item() + 1e-3),
                                   msg=lambda m, n=n: f"{n}: {m}")

