"""``python -m repro.data <what> --config JSON --seed N --out PATH``: one entry point per dataset.

Synthesizers are deterministic from ``--seed``; ``download`` fetches a dataset spec from the
full-scale config (checksummed, resumable). Every output gets a provenance record beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from repro.common.cli import add_common_args, done, start
from repro.common.provenance import write_provenance


def _videos(args: argparse.Namespace) -> dict:
    from repro.data.synth_videos import synthesize_videos

    return synthesize_videos(args.out, args.config, args.seed)


def _detection(args: argparse.Namespace) -> dict:
    from repro.data.synth_detection import synthesize_detection

    return synthesize_detection(args.out, args.config, args.seed)


def _mixtures(args: argparse.Namespace) -> dict:
    from repro.data.mixtures import write_mixtures

    return write_mixtures(args.out, args.config, args.seed)


def _digits(args: argparse.Namespace) -> dict:
    from repro.data.digits import write_digits

    return write_digits(args.out, args.config, args.seed)


def _classification(args: argparse.Namespace) -> dict:
    from repro.data.synth_classification import write_classification

    return write_classification(args.out, args.config, args.seed)


def _download(args: argparse.Namespace) -> dict:
    from repro.data.download import download_dataset

    return download_dataset(args.config, args.out, args.cache)


def _imagenet(args: argparse.Namespace) -> dict:
    from repro.data.imagenet import prepare_imagenet

    return prepare_imagenet(args.inp, args.out, args.config.get("imagenet_md5"))


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], dict], str]] = {
    "videos": (_videos, "synthetic videos of moving textured objects + ground truth (TI mining)"),
    "detection": (_detection, "synthetic COCO-format detection set with small/medium/large objects (FPN)"),
    "mixtures": (_mixtures, "2-D Gaussian mixtures: ring of 8, ring of 6, grid of 25 (GANs)"),
    "digits": (_digits, "scikit-learn's handwritten digits, split train/test (GANs, quantization)"),
    "classification": (_classification, "synthetic 10-class small-image set (LARS study)"),
    "download": (_download, "download, verify and extract one real dataset (full scale)"),
    "imagenet": (_imagenet, "verify the user's ILSVRC2012 release tars and unpack them (full scale)"),
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = add_common_args(sub.add_parser(name, help=help_text))
        p.add_argument("--out", type=Path, required=True, help="output file or folder (from the rule)")
        if name == "download":
            p.add_argument("--cache", type=Path, required=True, help="folder for partial and verified archives")
        if name == "imagenet":
            p.add_argument("--in", dest="inp", type=Path, required=True, help="folder holding the ILSVRC2012 release tars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    # a download spec is checked by its module (its errors name the file); the ImageNet tars' section is
    # data.classification (imagenet_md5)
    section = {"download": None, "imagenet": "data.classification"}.get(args.command, f"data.{args.command}")
    start(args, section)
    stats = COMMANDS[args.command][0](args)
    write_provenance(args.out, args.config, args.seed, started=args.started, stage=f"data.{args.command}")
    return done("repro.data", args, {"out": str(args.out), **stats})
