"""The real-format miniatures (tests/realformat) through the pipeline's own download and readers.

Each release is built once per module, fetched by ``repro.data.download.download_dataset`` (file://
URLs with the archives' md5s, as the rehearsal config gives them over HTTP) and read by the stages'
readers, as the rehearsal DAG does. The rehearsal itself (the whole full-scale DAG through SLURM) is
tests/test_slurm.py's slow test; this module checks the fixtures are what the real releases are.
"""

from __future__ import annotations

import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from realformat import mnist, voc
from realformat.release import BUILDERS, downloads_config
from repro.common.config import merged_config
from repro.data.download import download_dataset

from conftest import FULL, REPO

REHEARSAL = REPO / "workflow" / "configs" / "rehearsal.yaml"


@pytest.fixture(scope="module")
def digests(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, str]]]:
    """(folder, {dataset: {archive: md5}}): every miniature release, built once."""
    root = tmp_path_factory.mktemp("realformat")
    return root, {name: build(root / "archives") for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def releases(digests: tuple[Path, dict]) -> dict[str, Path]:
    """{dataset: its folder after download + md5 check + extraction by the pipeline's downloader}."""
    root, sums = digests
    spec = downloads_config(sums, (root / "archives").as_uri())
    for name in spec:
        download_dataset(spec[name], root / "raw" / name, root / "cache")
    return {name: root / "raw" / name for name in spec}


def test_archives_carry_the_real_release_names(digests: tuple[Path, dict]) -> None:
    """Every archive full.yaml downloads has a miniature of the same name (videos: no public release)."""
    full = yaml.safe_load(FULL.read_text())["downloads"]
    for name, files in digests[1].items():
        real = {Path(f["url"]).name for f in full[name]["files"]}
        assert real == set(files) or name == "videos", (name, real, set(files))  # videos: no public release
    assert set(digests[1]) >= {"coco2017", "coco2017_test", "voc2007", "cifar10", "mnist"}


def test_archives_are_reproducible(tmp_path: Path) -> None:
    """Same inputs, same bytes: the md5s the rehearsal checks do not depend on when they were built."""
    assert mnist.build(tmp_path / "a") == mnist.build(tmp_path / "b")
    assert voc.build(tmp_path / "a") == voc.build(tmp_path / "b")


def test_coco_layout_and_quirks(releases: dict[str, Path]) -> None:
    from pycocotools.coco import COCO

    root = releases["coco2017"]
    ann = root / "annotations"
    assert {p.name for p in ann.iterdir()} >= {"instances_train2017.json", "instances_val2017.json"}
    gt = COCO(str(ann / "instances_train2017.json"))
    ids = sorted(gt.getCatIds())
    assert len(ids) == 80 and ids[0] == 1 and ids[-1] == 90 and 12 not in ids
    crowd = [a for a in gt.dataset["annotations"] if a["iscrowd"]]
    assert crowd and all(isinstance(a["segmentation"]["counts"], list) for a in crowd)
    assert all(gt.annToMask(a).sum() == a["area"] for a in crowd)
    empty = [i for i in gt.getImgIds() if not gt.getAnnIds(imgIds=i)]
    assert empty
    from PIL import Image

    modes = {Image.open(root / "train2017" / im["file_name"]).mode for im in gt.dataset["images"]}
    assert modes == {"RGB", "L"}
    with zipfile.ZipFile(root.parent.parent / "archives" / "train2017.zip") as zf:
        assert zf.namelist()[0] == "train2017/"


def test_coco_through_the_detection_reader(releases: dict[str, Path]) -> None:
    """find_splits + CocoDetection: 81 classes (80 + background), ids 1-90 mapped to 1..80, grey images
    as 3 channels, crowd boxes out of the training targets, empty images kept for evaluation."""
    from repro.detect.data import CocoDetection, find_splits

    train, val = find_splits(releases["coco2017"])
    ds = CocoDetection(train)
    assert ds.num_classes == 81
    assert ds.cat_to_label[90] == 80 and ds.cat_to_label[13] == 12
    for i in range(len(ds)):
        img, target = ds[i]
        assert img.shape[0] == 3 and img.dtype.is_floating_point
        assert all(1 <= int(v) <= 80 for v in target["labels"])
    n_crowd = sum(a["iscrowd"] for a in train.coco["annotations"])
    assert sum(len(t["labels"]) for t in ds.targets) == len(train.coco["annotations"]) - n_crowd
    assert len(CocoDetection(train, skip_empty=True)) < len(ds)
    assert len(CocoDetection(val)) == len(val.coco["images"])


def test_voc_through_the_detection_and_crop_readers(releases: dict[str, Path]) -> None:
    """voc_to_coco: difficult -> iscrowd, 1-based inclusive pixels -> COCO [x, y, w, h]; person parts
    (<part><bndbox>) are not objects; voc_crops leaves difficult objects out."""
    import xml.etree.ElementTree as ET

    from repro.detect.data import find_splits
    from repro.pretrain.data import voc_crops

    root = releases["voc2007"] / "VOCdevkit" / "VOC2007"
    trainval, test = find_splits(releases["voc2007"])
    xml_objects = sum(len(ET.parse(p).getroot().findall("object"))
                      for p in (root / "Annotations").glob("*.xml")
                      if p.stem in (root / "ImageSets/Main/trainval.txt").read_text().split())
    assert len(trainval.coco["annotations"]) == xml_objects
    assert any(a["iscrowd"] for a in trainval.coco["annotations"])
    assert len(test.coco["images"]) == len((root / "ImageSets/Main/test.txt").read_text().split())
    for im in trainval.coco["images"]:
        anns = [a for a in trainval.coco["annotations"] if a["image_id"] == im["id"]]
        for a in anns:
            x, y, w, h = a["bbox"]
            assert x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"], (im, a)
    crops = voc_crops(releases["voc2007"], 32)
    n_easy = sum(1 for a in trainval.coco["annotations"] + test.coco["annotations"] if not a["iscrowd"])
    assert crops.x.shape == (n_easy, 3, 32, 32)


def test_cifar_batches_are_python2_pickles(releases: dict[str, Path]) -> None:
    from repro.data.readers import read_cifar10

    batch = releases["cifar10"] / "cifar-10-batches-py" / "data_batch_1"
    raw = batch.read_bytes()
    assert raw[:2] == b"\x80\x02" and b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    d = pickle.loads(raw, encoding="bytes")
    assert set(d) == {b"batch_label", b"labels", b"data", b"filenames"} and isinstance(d[b"labels"], list)
    meta = pickle.loads((batch.parent / "batches.meta").read_bytes(), encoding="bytes")
    assert meta[b"label_names"][0] == b"airplane"
    data = read_cifar10(releases["cifar10"])
    assert data["x_train"].shape == (300, 3, 32, 32) and data["x_test"].shape == (60, 3, 32, 32)
    # channel-major rows: the first 1024 bytes of a row are the red plane
    np.testing.assert_array_equal(data["x_train"][0, 0].ravel(), d[b"data"][0, :1024])


def test_mnist_idx_headers(releases: dict[str, Path]) -> None:
    from repro.data.readers import read_mnist

    raw = (releases["mnist"] / "train-images-idx3-ubyte").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03" and int.from_bytes(raw[4:8], "big") == 300
    data = read_mnist(releases["mnist"])
    assert data["x_train"].shape == (300, 28, 28) and data["y_test"].dtype == np.int64


def test_videos_in_two_containers_and_a_corrupt_one(releases: dict[str, Path]) -> None:
    from repro.graph.mine import VideoReadError, iter_frames
    from repro.graph.shards import list_videos

    listed = [v["file"] for v in list_videos(releases["videos"])]
    assert {Path(f).suffix for f in listed} == {".mp4", ".avi"} and "clips/broken.mp4" in listed
    n = sum(1 for _ in iter_frames(releases["videos"] / "clips" / "clip01.avi"))
    assert n == 48
    with pytest.raises(VideoReadError):
        list(iter_frames(releases["videos"] / "clips" / "broken.mp4"))
    with tarfile.open(releases["videos"].parent.parent / "archives" / "videos.tar") as tar:
        assert all(m.mtime == tar.getmembers()[0].mtime for m in tar.getmembers())


# what selects code paths (models, arms, variants, data sources, readers); rehearsal.yaml leaves them be
PATH_KEYS = [("scale",), ("data",), ("detect", "models"), ("detect", "backbone"), ("detect", "pooler"),
             ("detect", "transfer", "arms"), ("detect", "transfer", "model"), ("detect", "transfer", "datasets"),
             ("gan", "run"), ("graph", "variants"), ("graph", "features", "kind"), ("pretrain", "arms"),
             ("pretrain", "eval", "sources"), ("lars", "conv"), ("lars", "wide"), ("lars", "sgd", "scaling"),
             ("lars", "lars", "scaling")]


def test_rehearsal_config_keeps_every_full_scale_path() -> None:
    """rehearsal.yaml over full.yaml shrinks sizes only: the same models, arms, variants, experiments,
    data sources and datasets (quant nets enabled, GAN arms); downloads come from the generated config."""
    full, reh = merged_config(FULL), yaml.safe_load(REHEARSAL.read_text())
    merged = merged_config(FULL, REHEARSAL)
    assert "downloads" not in reh
    for path in PATH_KEYS:
        a, b = full, merged
        for key in path:
            a, b = a[key], b[key]
        assert a == b or path == ("lars", "conv") and len(a) == len(b), path  # AlexNet's 5 convs, narrower
    for name, net in full["quant"]["nets"].items():
        assert merged["quant"]["nets"][name]["enabled"] == net["enabled"]
        assert merged["quant"]["nets"][name].get("model") == net.get("model")
    for name, exp in full["gan"]["experiments"].items():
        assert merged["gan"]["experiments"][name].get("arms") == exp.get("arms"), name


def test_coco_test_dev_release_reads_as_the_server_expects(releases: dict[str, Path]) -> None:
    """test2017.zip + image_info_test2017.zip: the test-dev list is a subset of the unpacked images."""
    from repro.detect.data import CocoDetection, find_test_dev

    test = CocoDetection(find_test_dev(releases["coco2017_test"]), cache=False)
    assert len(test) == 3 and test.num_classes == 81 and test.cat_ids[-1] == 90
    img, _ = test[0]
    assert img.shape[0] == 3  # the grey JPEG among them reads as RGB too


def test_imagenet_rehearsal_config_points_the_lars_study_at_the_miniature_tars(tmp_path: Path) -> None:
    """The ILSVRC2012 miniature and its config (run_rehearsal.sh step 5): valid over full.yaml and
    rehearsal.yaml, and the tars it names verify against its md5s without touching torchvision's."""
    from realformat.release import imagenet_overrides
    from repro.common.config import check_config
    from repro.data.imagenet import verify_archives

    over = imagenet_overrides(tmp_path)
    (tmp_path / "imagenet.yaml").write_text(yaml.safe_dump(over))
    cfg = merged_config(REPO / "config.yaml", FULL, REHEARSAL, tmp_path / "imagenet.yaml")
    check_config(cfg["data"], "data")
    check_config(cfg["lars"], "lars")
    cls = cfg["data"]["classification"]
    assert cls["source"] == "imagenet" and cfg["lars"]["image_size"] == 64
    records = verify_archives(cls["imagenet_tars"], cls["imagenet_md5"])
    assert {k: r["md5"] for k, r in records.items()} == cls["imagenet_md5"]
