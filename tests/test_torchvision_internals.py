"""The private torchvision internals the detector builds on, pinned: an upgrade that moves or changes
one fails here, by name, instead of deep inside a training run.

The detector reuses torchvision's pooler helpers (``torchvision.ops.poolers._setup_scales`` & co.) to
swap the per-level pooling op, its ``_utils`` box checks in the separable RoIAlign, the
``IntermediateLayerGetter`` behind the C4/C5 bodies, and the balanced sampler it keys per image. The
public attributes it reads on torchvision's modules are checked as well.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torchvision

PRIVATE = {  # module -> name -> the parameters our call sites pass
    "torchvision.ops._utils": {"check_roi_boxes_shape": ["boxes"], "convert_boxes_to_roi_format": ["boxes"]},
    "torchvision.ops.poolers": {"_convert_to_roi_format": ["boxes"], "_filter_input": ["x", "featmap_names"],
                                "_setup_scales": ["features", "image_shapes", "canonical_scale", "canonical_level"]},
    "torchvision.models._utils": {"IntermediateLayerGetter": ["model", "return_layers"]},
    "torchvision.models.detection._utils": {"BalancedPositiveNegativeSampler": ["batch_size_per_image",
                                                                                "positive_fraction"]},
}


@pytest.mark.parametrize("module", sorted(PRIVATE))
def test_private_helpers_keep_their_names_and_signatures(module: str) -> None:
    import importlib

    mod = importlib.import_module(module)
    for name, params in PRIVATE[module].items():
        obj = getattr(mod, name, None)
        assert obj is not None, f"torchvision {torchvision.__version__} has no {module}.{name}"
        sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
        got = [p for p in sig.parameters if p != "self"]
        assert got[: len(params)] == params, f"{module}.{name}{sig} changed (we pass {params})"


def test_attributes_the_detector_reads() -> None:
    from torchvision.ops import MultiScaleRoIAlign

    from repro.detect.models import FastMultiScaleRoIAlign

    pooler = FastMultiScaleRoIAlign(["0", "1"], 7, 2, canonical_scale=224, canonical_level=4)
    for attr in ("featmap_names", "output_size", "sampling_ratio", "scales", "map_levels", "canonical_scale",
                 "canonical_level"):
        assert hasattr(pooler, attr), f"MultiScaleRoIAlign lost .{attr}"
    ref = MultiScaleRoIAlign(["0", "1"], 7, 2, canonical_scale=224, canonical_level=4)
    g = torch.Generator().manual_seed(0)
    feats = {"0": torch.randn(1, 4, 32, 32, generator=g), "1": torch.randn(1, 4, 16, 16, generator=g)}
    boxes = [torch.tensor([[2.0, 3.0, 40.0, 50.0], [10.0, 10.0, 120.0, 100.0]])]
    torch.testing.assert_close(pooler(feats, boxes, [(128, 128)]), ref(feats, boxes, [(128, 128)]))
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3)
    assert hasattr(model.rpn, "fg_bg_sampler") and hasattr(model.roi_heads, "fg_bg_sampler")
