"""Build every miniature release into one folder and describe it as a ``downloads:`` config.

:func:`build_all` writes ``<out>/archives/`` (what the HTTP server serves) and the stand-in weights;
:func:`downloads_config` turns the digests into the config that points the pipeline at
``http://127.0.0.1:<port>/`` with each archive's md5, as ``workflow/configs/full.yaml`` lists the
real releases (same file names, same ``extract: true``).
"""

from __future__ import annotations

from pathlib import Path

from realformat import cifar, coco, mnist, videos, voc, weights

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
