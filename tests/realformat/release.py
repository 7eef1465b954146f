"""Build every miniature release into one folder and describe it as a ``downloads:`` config.

:func:`build_all` writes ``<out>/archives/`` (what the HTTP server serves) and the stand-in weights;
:func:`downloads_config` turns the digests into the config that points the pipeline at
``http://127.0.0.1:<port>/`` with each archive's md5, as ``workflow/configs/full.yaml`` lists the
real releases (same file names, same ``extract: true``). ImageNet is never downloaded:
:func:`imagenet_overrides` builds the three ILSVRC2012 tars in a local folder and gives the config that
switches the LARS study to them (``data.classification.source: imagenet``, the miniature's md5s).
"""

from __future__ import annotations

from pathlib import Path

from realformat import cifar, coco, ilsvrc, mnist, videos, voc, weights

BUILDERS = {"coco2017": coco.build, "coco2017_test": coco.build_test, "voc2007": voc.build, "cifar10": cifar.build, "mnist": mnist.build,
            "videos": videos.build}


def build_all(out: Path) -> dict[str, dict[str, str]]:
    """{dataset: {archive name: md5}}, archives written to ``out/archives``."""
    return {name: build(out / "archives") for name, build in BUILDERS.items()}


def downloads_config(digests: dict[str, dict[str, str]], base_url: str) -> dict:
    """The ``downloads:`` section for ``digests``, every file fetched from ``base_url``."""
    return {name: {"files": [{"url": f"{base_url.rstrip('/')}/{f}", "md5": d, "extract": True}
                             for f, d in files.items()]}
            for name, files in digests.items()}


def rehearsal_overrides(out: Path, digests: dict[str, dict[str, str]], base_url: str) -> dict:
    """What the rehearsal adds over ``rehearsal.yaml``: the local downloads and the stand-in weights."""
    return {"downloads": downloads_config(digests, base_url),
            "detect": {"imagenet_weights": str(weights.build(out / "weights").resolve())}}


def imagenet_overrides(out: Path) -> dict:
    """The ILSVRC2012 miniature in ``out/ilsvrc2012`` and the config that points the LARS study at it
    (as a user would with the real tars, plus the miniature's md5s and a 64-px crop: AlexNet's layers)."""
    mini = ilsvrc.build_ilsvrc2012(out / "ilsvrc2012", n_classes=3, train_per_class=8, val_per_class=2,
                                   size=(96, 80))
    return {"data": {"classification": {"source": "imagenet", "imagenet_tars": str(mini.folder.resolve()),
                                        "imagenet_md5": dict(mini.md5)}},
            "lars": {"image_size": 64}}
