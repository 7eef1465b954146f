"""Training loop and inference for torchvision Faster R-CNN models.

:func:`train` is deliberately a single code path: SGD steps over an iterable of batches on one
device, with the LR schedule of :func:`lr_at`, gradient-norm clipping, a NaN check, a per-step log kept in
the checkpoint (so a resumed run writes the same log), and a checkpoint every N steps through ``repro.common.checkpoint`` so a killed job resumes. Under DDP
(``repro.common.distributed``) the model is wrapped, each rank's loader yields its share of every
global batch, the logged losses are averaged over ranks (the same NaN verdict on every rank) and the
per-image sampling is keyed by the batch slot, so N ranks train what one process does. :func:`infer` runs one pass that
returns both the RPN proposals (for Table 1's recall) and the final detections (Table 3's AP).
"""

from __future__ import annotations

import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.transform import resize_boxes
from tqdm import tqdm

from repro.common.amp import Precision
from repro.common.distributed import DistInfo, all_reduce_mean, unwrap
from repro.common.errors import NonFiniteLossError
from repro.common.io import atomic_write_bytes
from repro.detect.models import set_sampling_keys

__all__ = ["NonFiniteLossError", "evaluate_model", "infer", "lr_at", "train", "write_train_log"]


def lr_at(step: int, *, base_lr: float, warmup_iters: int, warmup_factor: float, steps: Sequence[int],
          gamma: float) -> float:
    """Linear warm-up from ``base_lr * warmup_factor`` over ``warmup_iters``, then x``gamma`` at each of ``steps``.

    The paper (Sec. 4.1-4.2): LR 0.02, divided by 10 after 60k of 80k iterations (batch 16). The warm-up is
    not in the paper; it is the usual guard for training from scratch and for large batches.
    """
    factor = gamma ** sum(step >= s for s in steps)
    if step < warmup_iters:
        alpha = step / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return base_lr * factor


LOG_COLUMNS = ("step", "lr", "loss", "loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")


def write_train_log(path: Path, rows: Sequence[Sequence[float]]) -> None:
    """The per-step log (one row per step, :data:`LOG_COLUMNS`) as CSV, written atomically."""
    lines = [",".join(LOG_COLUMNS)]
    lines += [",".join([str(int(r[0]))] + [f"{v:.6g}" for v in r[1:]]) for r in rows]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def build_optimizer(model: torch.nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """Synchronous SGD over the trainable parameters (FPN Sec. 5.1: momentum 0.9, weight decay 1e-4 at full
    scale); frozen layers get no optimizer state."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])


def _to_device(images: list[Tensor], targets: list[dict], device: torch.device):
    return [im.to(device, non_blocking=True) for im in images], [
        {k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets
    ]


def train(model: FasterRCNN, optimizer: torch.optim.Optimizer, batches: Iterable, *, device: torch.device,
          start_step: int, total_steps: int, lr_fn: Callable[[int], float], grad_clip: float | None,
          checkpoint_every: int, save_checkpoint: Callable[[int, dict[str, list[float]], list[list[float]]], None],
          log_every: int = 10, recent: dict[str, list[float]] | None = None,
          log_rows: list[list[float]] | None = None, dist: DistInfo | None = None,
          precision: Precision | None = None) -> tuple[dict[str, float], list[list[float]]]:
    """Train ``model`` from ``start_step`` to ``total_steps`` on ``batches`` (one (images, targets) per step).

    ``save_checkpoint(step, recent, log_rows)`` is called every ``checkpoint_every`` steps and at the end,
    with the last ``log_every`` values of each loss (``recent``) and the per-step log so far (one row of
    :data:`LOG_COLUMNS` per step); both are restored on resume, so the returned means and log are those of
    an uninterrupted run. Returns (mean of each loss over the last ``log_every`` steps, the per-step log).
    Raises :class:`NonFiniteLossError` on a NaN/inf loss. ``model`` may be DDP-wrapped (``dist``: this rank).
    ``precision``: mixed precision on CUDA (:mod:`repro.common.amp`; None: fp32), as torchvision's
    detection references train (autocast forward, scaled backward, unscale before clipping).
    """
    dist = dist or DistInfo()
    precision = precision or Precision(device.type)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    recent = {k: list(v) for k, v in (recent or {}).items()}
    rows = [list(r) for r in (log_rows or [])]
    bar = tqdm(total=total_steps, initial=start_step, desc="train", file=sys.stderr, mininterval=5.0,
               disable=not dist.is_main)
    step = start_step
    for images, targets in batches:
        if step >= total_steps:
            break
        lr = lr_fn(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        keys = [tuple(int(v) for v in t.pop("sample_key").tolist()) for t in targets]
        set_sampling_keys(unwrap(model), keys)  # per-image RPN/RoI sampling streams (seed, step, slot)
        images, targets = _to_device(images, targets, device)
        with precision.autocast():
            losses = model(images, targets)  # loss_classifier, loss_box_reg, loss_objectness, loss_rpn_box_reg
            loss = sum(losses.values())
        # this step's losses of the global batch (mean over ranks), the same on every rank
        logged = dict(zip(["loss", *losses], all_reduce_mean(torch.stack([loss, *losses.values()]).detach(),
                                                             dist).tolist()))
        if not all(math.isfinite(v) for v in logged.values()):
            detail = ", ".join(f"{k}={v:.4g}" for k, v in logged.items() if k != "loss")
            raise NonFiniteLossError(f"non-finite training loss at step {step} (lr {lr:.4g}): {detail}")
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(optimizer, clip=(params, grad_clip) if grad_clip else None)
        step += 1
        for k, v in logged.items():
            recent.setdefault(k, []).append(v)
            recent[k] = recent[k][-log_every:]
        rows.append([step, lr, *(logged[c] for c in LOG_COLUMNS[2:])])
        bar.update(1)
        if step % log_every == 0:
            bar.set_postfix(loss=f"{logged['loss']:.3f}", lr=f"{lr:.3g}")
        if step % checkpoint_every == 0 or step == total_steps:
            save_checkpoint(step, recent, rows)
    bar.close()
    if step < total_steps:
        raise RuntimeError(f"the data loader ran out at step {step} of {total_steps}")
    return {k: sum(v) / len(v) for k, v in recent.items()}, rows


@torch.no_grad()
def infer(model: FasterRCNN, images: list[Tensor], *, box_proposals: int | None = None
          ) -> tuple[list[dict[str, Tensor]], list[Tensor]]:
    """Detections and RPN proposals for a list of [3, H, W] images, in input-image pixels.

    This is the same computation as ``model(images)`` in eval mode. The difference is that the RPN's
    proposals are returned too (all ``rpn_post_nms_top_n_test`` of them, sorted by objectness, for
    the recall of Table 1), and only the top ``box_proposals`` go to the box head (None: all).
    """
    model.eval()
    original_sizes = [tuple(im.shape[-2:]) for im in images]
    batch, _ = model.transform(images)
    features = model.backbone(batch.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    proposals, _ = model.rpn(batch, features)
    head_in = proposals if box_proposals is None else [p[:box_proposals] for p in proposals]
    detections, _ = model.roi_heads(features, head_in, batch.image_sizes)
    detections = model.transform.postprocess(detections, batch.image_sizes, original_sizes)
    proposals = [resize_boxes(p, s, o) for p, s, o in zip(proposals, batch.image_sizes, original_sizes)]
    return detections, proposals


def evaluate_model(model: FasterRCNN, loader: Iterable, *, device: torch.device, box_proposals: int | None,
                   label_to_cat: Sequence[int], keep_proposals: bool = True) -> dict[str, Any]:
    """Run :func:`infer` over ``loader``. Returns COCO-format detections and proposals, and the time per image.

    ``keep_proposals=False`` returns no proposals (a test-dev run: 20k images x 1000 proposals)."""
    from repro.detect.metrics import detections_to_coco, proposals_to_coco

    dets: list[dict] = []
    props: list[dict] = []
    n_images, seconds = 0, 0.0
    per_image: list[int] = []  # proposals the RPN returned for each image (its post-NMS cap at most)
    for images, targets in tqdm(loader, desc="eval", file=sys.stderr, mininterval=5.0):
        images = [im.to(device) for im in images]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out, proposals = infer(model, images, box_proposals=box_proposals)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - t0
        n_images += len(images)
        for o, p, t in zip(out, proposals, targets):
            image_id = int(t["image_id"])
            dets += detections_to_coco(image_id, o["boxes"].cpu().numpy(), o["scores"].cpu().numpy(),
                                       o["labels"].cpu().numpy(), label_to_cat)
            if keep_proposals:
                props += proposals_to_coco(image_id, p.cpu().numpy(), label_to_cat[1])
            per_image.append(len(p))
    counts = {"mean": sum(per_image) / len(per_image), "min": min(per_image)} if per_image else {"mean": 0.0, "min": 0}
    return {"detections": dets, "proposals": props, "infer_s_per_img": seconds / max(n_images, 1),
            "n_images": n_images, "proposals_per_image": counts}


