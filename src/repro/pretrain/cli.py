"""``python -m repro.pretrain <command>``: Transitive Invariance part 2 (arXiv 1708.02901, Sec. 3.3-4).

Commands (one rule each, see workflow/rules/pretrain.smk):

* ``train``   one arm and seed: Triplet-Siamese pretraining with the ranking loss on the arm's pairs
              (``scratch`` only writes the initial weights; ``context`` trains the 8-way context task) -> ``backbone.pt``, ``net.pt``,
              ``metrics.csv`` (one row per step), ``train.json``
* ``imagenet`` the ImageNet-supervised transfer arm (full scale): the user's torchvision weights in the
              backbone -> ``backbone.pt`` (nothing trained)
* ``eval``    one seed, every arm: linear probe and kNN accuracy of the frozen pooled features on
              labelled crops -> ``eval/s<seed>.json``
* ``claims``  all seeds -> ``summary.json`` (per arm mean and CI), ``results/claims/pretrain.json``,
              and the figure ``probe_knn.png``

Output contract with the detection stage (TI transfer): ``backbone.pt`` is exactly
``repro.detect.backbone.tiny_resnet(width=detect.width, blocks=detect.blocks).state_dict()`` (or
``resnet50``'s at full scale), loadable with ``torch.load(..., weights_only=True)`` and
``load_state_dict(..., strict=True)``. ``net.pt`` is the whole tower's state_dict (``backbone.*`` and
``head.*``, :func:`repro.pretrain.models.triplet_net`).

Multi-GPU: ``torchrun --nproc_per_node=N -m repro.pretrain train ...`` (or ``srun``) trains one arm as N
DDP ranks (``repro.common.distributed``; ``pretrain.batch`` is the global mini-batch whose patches all
serve as distractors, see :mod:`repro.pretrain.engine`); rank 0 alone writes checkpoints and outputs,
with the unwrapped state_dicts, so 1- and N-process checkpoints are interchangeable.

Initialisation (Sec. 6: "We use the network pre-trained in [9] to initialize our convolutional
layers"): every net of seed s is built from the same random weights, drawn by ``torch.manual_seed(s)``
right before it is built (torchvision's ResNet init for the backbone, PyTorch's for the fc head); the
``scratch`` arm saves exactly those weights, the ``context`` arm trains them on the context task
(:mod:`repro.pretrain.context`), and with ``pretrain.init: context`` the ranking arms load the context
arm's backbone of their seed (``--init-backbone``) before training; the ``*_randinit`` ablation arms
(and every ranking arm with ``init: scratch``) keep the random weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from repro.common.cli import add_common_args, done, job_from_args, start
from repro.common.config import borrowed
from repro.common.io import atomic_torch_save, atomic_write_json, read_json
from repro.common.provenance import provenance_record, write_provenance

# The schema sections the --config keys come from: the rules add the detection backbone's keys.
SECTIONS = ("pretrain", "detect")


# ----------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> dict:
    from repro.common.distributed import barrier, distributed
    from repro.pretrain.run import TrainJob, train_arm

    with distributed(args.config["device"], key="pretrain.device") as (info, device):
        out = train_arm(job_from_args(TrainJob, args), args.config, info, device)
        barrier(info)  # the other ranks wait while rank 0 writes the outputs
    return out


def cmd_eval(args: argparse.Namespace) -> dict:
    from repro.pretrain.run import EvalJob, evaluate_arms

    return evaluate_arms(job_from_args(EvalJob, args), args.config)


def cmd_imagenet(args: argparse.Namespace) -> dict:
    """The ``imagenet`` transfer arm (Tables 1, 3, 4 "ImageNet"): the user's torchvision ImageNet weights in
    the tower's backbone (its classifier dropped), saved as that backbone's state_dict. Nothing is trained."""
    import torch

    from repro.detect.backbone import vgg16_body
    from repro.pretrain.run import build_net

    net = build_net(args.config, args.seed)
    if not args.weights.is_file():
        raise FileNotFoundError(f"imagenet: no such file {args.weights} (detect.imagenet_weights: torchvision's"
                                " ImageNet checkpoint of the detection backbone, supplied by the user)")
    if borrowed(args.config, "detect", ("backbone",))["backbone"] == "vgg16":  # torchvision's features.* names
        body = vgg16_body(imagenet_weights=args.weights)
        state = body.state_dict()
    else:
        state = torch.load(args.weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    net.backbone.load_state_dict(state, strict=True)
    atomic_torch_save(args.out_backbone, net.backbone.state_dict())
    write_provenance(args.out_backbone, args.config, args.seed, started=args.started, stage="pretrain.imagenet")
    return {"weights": str(args.weights), "tensors": len(state)}


def cmd_claims(args: argparse.Namespace) -> dict:
    from repro.common.claims import write_claims
    from repro.pretrain.claims import build_claims, summarize

    evals = [read_json(p) for p in args.evals]
    trains = [read_json(p) for p in args.train] if args.train else []
    graphs = [read_json(p) for p in args.graph_stats] if args.graph_stats else []
    summary = summarize(evals, trains, graphs)
    rows = build_claims(summary, args.config, scale=args.scale)
    write_claims(args.out_claims, rows)
    summary["provenance"] = provenance_record(args.config, None, started=args.started, stage="pretrain.claims")
    atomic_write_json(args.out_summary, summary)
    if args.out_figure is not None:
        from repro.pretrain.figures import draw_figure

        draw_figure(summary, args.out_figure)
        write_provenance(args.out_figure, args.config, None, started=args.started, stage="pretrain.claims")
    return {r.claim_id: r.verdict for r in rows}


COMMANDS = {
    "train": (cmd_train, "pretrain one arm and seed with the ranking loss"),
    "imagenet": (cmd_imagenet, "the ImageNet-supervised arm's backbone from the user's torchvision weights"),
    "eval": (cmd_eval, "linear probe and kNN accuracy of every arm of one seed"),
    "claims": (cmd_claims, "summary over seeds, claims and figure"),
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = add_common_args(sub.add_parser("train", help=COMMANDS["train"][1]))
    p.add_argument("--arm", required=True, help="scratch | context | intra | inter | transitive | transitive_hog"
                   " | transitive_short | transitive_mixed | intra_randinit | transitive_randinit")
    p.add_argument("--patches", type=Path, help="graph stage's patches.npy (not needed for scratch)")
    p.add_argument("--pairs", type=Path, help="graph stage's pairs.npz (not needed for scratch and context)")
    p.add_argument("--init-backbone", type=Path, help="the context arm's backbone.pt (ranking arms, pretrain.init: context)")
    p.add_argument("--out-backbone", type=Path, required=True, help="backbone state_dict (the detector's)")
    p.add_argument("--out-net", type=Path, required=True, help="whole tower state_dict")
    p.add_argument("--out-metrics", type=Path, required=True, help="per-step CSV")
    p.add_argument("--out-summary", type=Path, required=True, help="train.json")
    p.add_argument("--checkpoint-dir", type=Path, help="checkpoints (automatic resume)")
    p = add_common_args(sub.add_parser("imagenet", help=COMMANDS["imagenet"][1]))
    p.add_argument("--weights", type=Path, required=True, help="torchvision ImageNet state_dict of the backbone")
    p.add_argument("--out-backbone", type=Path, required=True, help="backbone state_dict (the detector's)")
    p = add_common_args(sub.add_parser("eval", help=COMMANDS["eval"][1]))
    p.add_argument("--arms", nargs="+", required=True)
    p.add_argument("--backbones", type=Path, nargs="+", required=True, help="backbone.pt per arm, same order")
    p.add_argument("--patches", type=Path, help="mined crops: patches.npy")
    p.add_argument("--nodes", type=Path, help="mined crops: nodes.npz (class_id >= 0 are labelled)")
    p.add_argument("--detection", type=Path, help="detection crops: the synthetic COCO-format detection set")
    p.add_argument("--voc", type=Path, help="VOC 2007 crops: the downloaded VOC 2007 folder (full scale)")
    p.add_argument("--out", type=Path, required=True)
    p = add_common_args(sub.add_parser("claims", help=COMMANDS["claims"][1]), seed=False)
    p.add_argument("--scale", default="default")
    p.add_argument("--evals", type=Path, nargs="+", required=True, help="eval/s<seed>.json")
    p.add_argument("--train", type=Path, nargs="*", help="train.json of every arm and seed (timings, losses)")
    p.add_argument("--graph-stats", type=Path, nargs="*", help="graph stage's stats.json per seed (pair precision)")
    p.add_argument("--out-claims", type=Path, required=True)
    p.add_argument("--out-summary", type=Path, required=True)
    p.add_argument("--out-figure", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    start(args, SECTIONS)  # before any work: a bad config value is named
    return done("repro.pretrain", args, COMMANDS[args.command][0](args))
