"""Benchmark: detection training throughput of our loop vs torchvision's reference loop; inference s/image.

    .venv/bin/python -m bench.detect_throughput [--model fpn] [--steps 4] [--rounds 8] [--threads 1] [--clock cpu]
    .venv/bin/python -m bench.detect_throughput --quick

Same model (the embedded default's ``detect`` config: Faster R-CNN FPN on the tiny ResNet at 256 px,
batch 4, built exactly as ``python -m repro.detect train`` builds it), same data (synthetic COCO-format
images rendered by ``repro.data.synth_detection`` with the default's data config), same initial
weights and optimizer state for every timed block:

* ours: :func:`repro.detect.engine.train` with the stage's data loader (``train_loader``), its LR
  schedule, gradient clipping and per-step CSV, and the optimizer built as the stage's CLI builds it;
* reference: the data and loop of pytorch/vision ``references/detection``: ``torchvision.datasets.
  CocoDetection`` on the same files (PIL decode each step, ``ConvertCocoPolysToMask``, ``PILToTensor``,
  ``ToDtype``, random horizontal flip), a plain DataLoader (``collate_fn=tuple(zip(*batch))``), and
  ``engine.py::train_one_epoch``: loss = sum
  of the loss dict, ``.item()`` of every loss for the logger, ``zero_grad``/``backward``/``step``,
  a warm-up ``LinearLR`` stepped per iteration, and ``torch.optim.SGD`` with its default arguments.

A third arm, ``reference_loop_only``, runs the reference loop on *our* dataset (decoded images cached
as uint8), isolating the loop itself from the data pipeline (``loop_only_ratio`` in the details).

The arms run in alternating blocks of ``steps`` steps on the same images (order swapped every round,
each block from the same saved weights); throughput = images / block seconds of process CPU time
(one thread: the wall time of an idle machine, and robust to other jobs on a shared one; ``--clock
wall`` for wall time), and the ratio is the median over rounds of ours / reference in the same round.
Goal: ratio >= 1.0.

RoIAlign backward: the C4 pooler's gradient (default config: batch x RoIs per image, C4 channels,
14x14 bins on the stride-16 map) by :func:`repro.detect.roi_align.roi_align_backward_cpu` vs
torchvision's CPU kernel ``_roi_align_backward`` on the same gradient and boxes (wall clock, best of
rounds; the max abs difference is in the details).

Inference: :func:`repro.detect.engine.infer` (detections + all RPN proposals, the top
``box_proposals_test`` to the box head) vs torchvision's ``model(images)`` in eval mode with the same
number of proposals given to the box head, on the same val images.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import best_of, row  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOAL_TRAIN_RATIO = 1.0
GOAL_INFER_RATIO = 1.1
GOAL_ROI_ALIGN_BACKWARD_RATIO = 0.5


def _default_config() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text())


def make_data(out: Path, *, n_train: int, n_val: int, seed: int) -> Path:
    """The default's synthetic detection set, only smaller (``n_train``/``n_val`` images)."""
    from repro.data.synth_detection import synthesize_detection

    cfg = dict(_default_config()["data"]["detection"], n_train=n_train, n_val=n_val)
    cfg.pop("source", None)
    synthesize_detection(out, cfg, seed)
    return out


def build(model_name: str, data: Path, cfg: dict[str, Any]):
    """(model, train_set, val_set, params) exactly as ``repro.detect.cli._train`` builds them."""
    from repro.detect.backbone import build_body, freeze_layers
    from repro.detect.data import CocoDetection, find_splits
    from repro.detect.models import DetectorSettings, build_detector

    train_split, val_split = find_splits(data)
    train_set = CocoDetection(train_split, skip_empty=cfg["skip_empty_train"], cache=cfg["cache_images"])
    val_set = CocoDetection(val_split, max_images=cfg["max_val_images"], cache=cfg["cache_images"])
    body = build_body(name=cfg["backbone"], width=cfg["width"], blocks=cfg["blocks"],
                      imagenet_weights=cfg["imagenet_weights"], imagenet_init=True)
    freeze_layers(body, cfg["trainable_layers"])
    model = build_detector(model_name, body=body, num_classes=train_set.num_classes,
                           settings=DetectorSettings.from_config(cfg))
    return model, train_set, val_set


def _ours_optimizer(params, cfg):
    """The optimizer as ``repro.detect.cli._train`` builds it."""
    from repro.detect import cli

    make = getattr(cli, "make_optimizer", None)
    if make is not None:
        return make(params, cfg)
    return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])


def ours_block(model, train_set, cfg, *, steps: int, seed: int, device: torch.device) -> tuple[float, float]:
    """(wall s, CPU s) of ``steps`` steps of the stage's loop (from a fresh optimizer, as a new run starts)."""
    from repro.detect.data import train_loader
    from repro.detect.engine import lr_at, train

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _ours_optimizer(params, cfg)
    torch.manual_seed(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    loader = train_loader(train_set, batch_size=cfg["batch_size"], seed=seed, start=0, total=steps,
                          hflip=cfg["hflip"], num_workers=cfg["num_workers"])
    train(model, optimizer, loader, device=device, start_step=0, total_steps=steps,
          lr_fn=lambda s: lr_at(s, base_lr=cfg["lr"], warmup_iters=cfg["warmup_iters"],
                                warmup_factor=cfg["warmup_factor"], steps=[], gamma=cfg["lr_gamma"]),
          grad_clip=cfg["grad_clip"], checkpoint_every=10**9, save_checkpoint=lambda *_: None)
    return time.perf_counter() - t0, time.process_time() - c0


class ReferenceCoco(torch.utils.data.Dataset):
    """The torchvision references' training data: ``torchvision.datasets.CocoDetection`` (PIL decode of
    every image at every step), ``ConvertCocoPolysToMask`` (boxes only: our set has no masks),
    ``PILToTensor`` + ``ToDtype(float, scale=True)`` + ``RandomHorizontalFlip(0.5)``
    (references/detection/coco_utils.py, presets.py, transforms.py)."""

    def __init__(self, image_root: Path, ann_file: Path) -> None:
        import contextlib
        import io

        import torchvision

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints while indexing
            self.base = torchvision.datasets.CocoDetection(str(image_root), str(ann_file))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        from torchvision.transforms import functional as F

        image, anno = self.base[i]
        w, h = image.size
        anno = [obj for obj in anno if obj.get("iscrowd", 0) == 0]
        boxes = torch.as_tensor([obj["bbox"] for obj in anno], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(min=0, max=w)
        boxes[:, 1::2].clamp_(min=0, max=h)
        classes = torch.tensor([obj["category_id"] for obj in anno], dtype=torch.int64)
        keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
        target = {"boxes": boxes[keep], "labels": classes[keep], "image_id": self.base.ids[i]}
        img = F.convert_image_dtype(F.pil_to_tensor(image), torch.float)
        return img, target


class _RandomHFlip(torch.utils.data.Dataset):
    """torchvision references' ``RandomHorizontalFlip(0.5)`` over a (image, target) dataset."""

    def __init__(self, base) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, target = self.base[i]
        if torch.rand(1) < 0.5:
            w = img.shape[-1]
            img = img.flip(-1)
            boxes = target["boxes"].clone()
            boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
            target = {**target, "boxes": boxes}
        return img, target


def _clear_sampling_keys(model) -> None:
    """Undo the per-image sampling keys our loop may have set on the model (where the stage has them)."""
    from repro.detect import models

    setter = getattr(models, "set_sampling_keys", None)
    if setter is not None:
        setter(model, None)


def _collate(batch):
    return tuple(zip(*batch))  # references/detection/utils.py::collate_fn


def reference_block(model, train_set, cfg, *, steps: int, seed: int, device: torch.device) -> tuple[float, float]:
    """(wall s, CPU s) of ``steps`` steps of torchvision's ``train_one_epoch`` loop (references/detection/engine.py).

    ``train_set``: :class:`ReferenceCoco` (the references' data) or the stage's own dataset (loop only).
    Its batches hold the same images as ours (our sampler's index lists, so both arms do the same work);
    everything else is the reference's: plain DataLoader, tuple collate, torch.rand flips.
    """
    from repro.detect.data import StepBatchSampler

    _clear_sampling_keys(model)  # torchvision's samplers on the global RNG, as in the reference
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    torch.manual_seed(seed)
    batches = list(StepBatchSampler(len(train_set), cfg["batch_size"], seed=seed, start=0, total=steps))
    t0, c0 = time.perf_counter(), time.process_time()
    loader = torch.utils.data.DataLoader(_RandomHFlip(train_set), batch_sampler=batches,
                                         num_workers=cfg["num_workers"], collate_fn=_collate)
    model.train()
    warmup_iters = min(cfg["warmup_iters"], steps)
    lr_scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=cfg["warmup_factor"],
                                                     total_iters=warmup_iters)
    logged: dict[str, float] = {}
    for images, targets in loader:
        images = list(image.to(device) for image in images)
        targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
        loss_dict = model(images, targets)
        losses = sum(loss for loss in loss_dict.values())
        loss_value = losses.item()
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"Loss is {loss_value}, stopping training")
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        lr_scheduler.step()
        logged = {"loss": loss_value, **{k: v.item() for k, v in loss_dict.items()}}  # MetricLogger.update
    del logged
    return time.perf_counter() - t0, time.process_time() - c0


def time_inference(model, val_set, cfg, *, device: torch.device, rounds: int,
                   clock=time.process_time) -> tuple[float, float, int]:
    """(ours s/img, torchvision forward s/img, images): best of ``rounds`` passes over the val images."""
    from repro.detect.data import collate
    from repro.detect.engine import infer

    batches = [collate([val_set[i] for i in range(j, min(j + cfg["eval_batch_size"], len(val_set)))])[0]
               for j in range(0, len(val_set), cfg["eval_batch_size"])]
    batches = [[im.to(device) for im in b] for b in batches]
    model.eval()
    post = model.rpn._post_nms_top_n
    box_proposals = cfg["box_proposals_test"]

    def ours() -> None:
        for b in batches:
            infer(model, b, box_proposals=box_proposals)

    def reference() -> None:
        _clear_sampling_keys(model)
        saved = post["testing"]
        if box_proposals is not None:
            post["testing"] = min(saved, box_proposals)  # the box head sees as many proposals as in ours
        try:
            with torch.no_grad():
                for b in batches:
                    model(b)
        finally:
            post["testing"] = saved

    ours()  # warm-up
    reference()
    t_ours, t_ref = float("inf"), float("inf")
    for _ in range(rounds):
        t0 = clock()
        ours()
        t_ours = min(t_ours, clock() - t0)
        t0 = clock()
        reference()
        t_ref = min(t_ref, clock() - t0)
    n = len(val_set)
    return t_ours / n, t_ref / n, n


def time_roi_align_backward(cfg: dict[str, Any], *, rounds: int, seed: int) -> tuple[float, float, dict[str, Any]]:
    """(ours s, torchvision s, details): RoIAlign backward at the C4 pooler's shapes, same gradient and boxes."""
    from repro.detect.backbone import build_body
    from repro.detect.roi_align import roi_align_backward_cpu

    gen = torch.Generator().manual_seed(seed)
    n, size, ratio = cfg["batch_size"], cfg["min_size"], cfg["sampling_ratio"]
    channels = build_body(name=cfg["backbone"], width=cfg["width"], blocks=cfg["blocks"], imagenet_weights=None,
                          imagenet_init=False).channels[2]
    r, hw, out, scale = n * cfg["box_batch_size_per_image"], size // 16, 14, 1 / 16
    side = torch.exp(torch.empty(r, 2).uniform_(math.log(8), math.log(size), generator=gen))  # 8 px .. image
    centre = torch.rand(r, 2, generator=gen) * size
    rois = torch.cat([torch.randint(0, n, (r, 1), generator=gen).float(),
                      (centre - side / 2).clamp(0, size), (centre + side / 2).clamp(0, size)], dim=1)
    grad = torch.randn(r, channels, out, out, generator=gen)
    t_ref, ref = best_of(lambda: torch.ops.torchvision._roi_align_backward(
        grad, rois, scale, out, out, n, channels, hw, hw, ratio, False), rounds)
    t_ours, got = best_of(lambda: roi_align_backward_cpu(grad, rois, scale, (out, out), (n, channels, hw, hw),
                                                         ratio, False), rounds)
    details = {"rois": r, "channels": channels, "map": hw, "output": out, "sampling_ratio": ratio,
               "max_abs_diff": float((got - ref).abs().max()), "max_abs_grad": float(ref.abs().max())}
    return t_ours, t_ref, details


def run(*, model_name: str = "fpn", steps: int = 4, rounds: int = 8, n_train: int = 32, n_val: int = 8,
        threads: int = 1, seed: int = 0, device: str = "cpu", clock: str = "cpu", quick: bool = False,
        verbose: bool = True) -> list[dict[str, Any]]:
    """Three rows: training images/s (ours over the reference loop), inference s/image, RoIAlign backward.

    ``clock="cpu"`` (default) times with the process CPU time: with one thread it is what the wall time
    would be on an idle machine, and it hardly moves when other jobs share the cores; ``"wall"`` uses
    the wall clock. Both are recorded in the details.
    """
    from repro.common.runtime import configure_threads
    from repro.detect.config import resolve_config

    if clock not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    configure_threads(threads)
    if quick:
        steps, rounds, n_train, n_val = 3, 2, 16, 4
    dev = torch.device(device)
    if dev.type == "cuda":
        clock = "wall"  # CPU time does not see GPU work
    k = 1 if clock == "cpu" else 0
    cfg = resolve_config(_default_config()["detect"])
    with tempfile.TemporaryDirectory(prefix="bench_detect_") as tmp:
        tmp = Path(tmp)
        data = make_data(tmp / "detection", n_train=n_train, n_val=n_val, seed=seed)
        model, train_set, val_set = build(model_name, data, cfg)
        ref_set = ReferenceCoco(data / "images" / "train", data / "train.json")
        if len(ref_set) != len(train_set):
            raise RuntimeError("the reference dataset and ours differ in length")
        model.to(dev)
        start = copy.deepcopy(model.state_dict())
        imgs = steps * cfg["batch_size"]
        arms = {
            "ours": lambda st, sd: ours_block(model, train_set, cfg, steps=st, seed=sd, device=dev),
            "reference": lambda st, sd: reference_block(model, ref_set, cfg, steps=st, seed=sd, device=dev),
            "reference_loop_only": lambda st, sd: reference_block(model, train_set, cfg, steps=st, seed=sd, device=dev),
        }
        for fn in arms.values():  # warm-up: one step each (allocator, lazy init), not timed
            model.load_state_dict(start)
            fn(1, seed)
        times: dict[str, list[tuple[float, float]]] = {a: [] for a in arms}  # (wall, cpu) per round
        for r in range(rounds):
            order = list(arms) if r % 2 == 0 else list(arms)[::-1]
            for arm in order:
                model.load_state_dict(start)
                times[arm].append(arms[arm](steps, seed + r))
            if verbose:
                print("  round {}: ".format(r) + "   ".join(f"{a} {imgs / times[a][-1][k]:6.2f} img/s" for a in arms)
                      + f"   ({clock} clock)", flush=True)
        model.load_state_dict(start)
        inf_ours, inf_ref, n_inf = time_inference(
            model, val_set, cfg, device=dev, rounds=max(2, rounds),
            clock=time.process_time if clock == "cpu" else time.perf_counter)
    roi_ours, roi_ref, roi_details = time_roi_align_backward(cfg, rounds=max(2, rounds), seed=seed)
    def ips(arm: str) -> float:
        return imgs / statistics.median(t[k] for t in times[arm])

    def paired(arm: str, j: int) -> float:  # per round: ours img/s / the arm's img/s = arm seconds / ours seconds
        return statistics.median(ta[j] / to[j] for to, ta in zip(times["ours"], times[arm]))

    ours_ips, ref_ips = ips("ours"), ips("reference")
    ratio, loop_ratio = paired("reference", k), paired("reference_loop_only", k)
    wall_ratio, wall_loop_ratio = paired("reference", 0), paired("reference_loop_only", 0)
    if verbose:
        print(f"detection training ({model_name}, batch {cfg['batch_size']}, {cfg['min_size']} px, {threads} thread(s), "
              f"{clock} clock): ours {ours_ips:.2f} img/s, torchvision reference {ref_ips:.2f} img/s, ratio {ratio:.3f} "
              f"(wall clock {wall_ratio:.3f}); loop only (both on our cached dataset): {ips('reference_loop_only'):.2f} "
              f"img/s, ratio {loop_ratio:.3f} (wall clock {wall_loop_ratio:.3f}); goal >= {GOAL_TRAIN_RATIO}")
        print(f"inference: ours {inf_ours:.4f} s/img, torchvision forward {inf_ref:.4f} s/img, "
              f"ratio {inf_ours / inf_ref:.3f}")
        print(f"RoIAlign backward (C4 shapes): ours {roi_ours * 1e3:.1f} ms, torchvision {roi_ref * 1e3:.1f} ms, "
              f"ratio {roi_ours / roi_ref:.3f}, max abs diff {roi_details['max_abs_diff']:.2e}")
    common = {"model": model_name, "batch_size": cfg["batch_size"], "image_size": cfg["min_size"],
              "backbone": f"{cfg['backbone']}(width={cfg['width']})", "threads": threads, "clock": clock}
    return [
        row(f"detect: training throughput ({model_name})", ours=ours_ips, reference=ref_ips, unit="images/s",
            ratio=ratio, reference_name="torchvision references/detection: CocoDetection + train_one_epoch loop, SGD",
            goal_on="ratio", goal_op=">=", goal=GOAL_TRAIN_RATIO, device=str(dev),
            details={**common, "steps_per_block": steps, "rounds": rounds,
                     "block_wall_cpu_s": times, "wall_clock_ratio": wall_ratio,
                     "loop_only_ratio": loop_ratio, "loop_only_wall_clock_ratio": wall_loop_ratio,
                     "loop_only_images_per_s": ips("reference_loop_only"),
                     "ratio": "median over rounds of ours img/s / reference img/s (same images, same start weights);"
                              " loop_only: the reference loop on our cached dataset"}),
        row(f"detect: inference time per image ({model_name})", ours=inf_ours, reference=inf_ref, unit="s/image",
            reference_name="torchvision FasterRCNN forward in eval mode, same proposals to the box head",
            goal_on="ratio", goal_op="<=", goal=GOAL_INFER_RATIO, device=str(dev),
            goal_text=f"ratio <= {GOAL_INFER_RATIO} (ours; no goal was set)",
            details={**common, "images": n_inf, "box_proposals_test": cfg["box_proposals_test"]}),
        row("detect: RoIAlign backward (C4 pooler shapes)", ours=roi_ours, reference=roi_ref, unit="s/call",
            reference_name="torchvision CPU kernel _roi_align_backward, same gradient and boxes",
            goal_on="ratio", goal_op="<=", goal=GOAL_ROI_ALIGN_BACKWARD_RATIO,
            goal_text=f"ratio <= {GOAL_ROI_ALIGN_BACKWARD_RATIO} (ours; no goal was set)", device="cpu",
            details={**roi_details, "threads": threads, "clock": "wall, best of rounds"}),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fpn", help="fpn | c4 | c5 | fpn_no_topdown | fpn_no_lateral | fpn_p2_only")
    p.add_argument("--steps", type=int, default=4, help="training steps per timed block")
    p.add_argument("--rounds", type=int, default=8, help="alternating (ours, reference) rounds")
    p.add_argument("--clock", default="cpu", choices=["cpu", "wall"], help="process CPU time (default) or wall time")
    p.add_argument("--n-train", type=int, default=32)
    p.add_argument("--n-val", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="3 steps x 2 rounds on 16 images")
    args = p.parse_args(argv)
    run(model_name=args.model, steps=args.steps, rounds=args.rounds, n_train=args.n_train, n_val=args.n_val,
        threads=args.threads, seed=args.seed, device=args.device, clock=args.clock, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
