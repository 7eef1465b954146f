"""A COCO test-dev 2017 results file for the official evaluation server (FPN Table 3 is test-dev).

The server takes ``detections_test-dev2017_<alg>_results.json``: a JSON list with one entry per
detection, ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` in original-image pixels
and COCO category ids, for the images of ``image_info_test-dev2017.json`` (zip the file to upload
it). The detector is a trained run's ``model.pt``, evaluated exactly as the val split is
(:func:`repro.detect.engine.evaluate_model`: ``box_proposals_test`` proposals into the head, up to
``box_detections_per_img`` detections per image above ``box_score_thresh``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repro.common.device import resolve_device
from repro.common.io import atomic_write_json
from repro.detect.data import CocoDetection, eval_loader, find_test_dev
from repro.detect.engine import evaluate_model
from repro.detect.timing import load_detector


def results_file_name(alg: str) -> str:
    """The server's naming rule: ``[type]_[testset]_[alg]_results.json``."""
    return f"detections_test-dev2017_{alg}_results.json"


def run_test_dev(data: Path, model: str, weights: Path, out: Path, cfg: dict[str, Any]) -> int:
    """Detect on every test-dev image and write the results file; returns the number of detections.

    Labels map back to the sorted COCO category ids of the image-info file, the same map the training
    split gave the model (``CocoDetection``); a different category count is an error.
    """
    device = resolve_device(cfg["device"], key="detect.device")
    test = CocoDetection(find_test_dev(data), cache=False)
    detector = load_detector(model, weights, cfg=cfg, num_classes=test.num_classes, device=device)
    result = evaluate_model(detector, eval_loader(test, batch_size=cfg["eval_batch_size"],
                                                  num_workers=cfg["num_workers"]),
                            device=device, box_proposals=cfg["box_proposals_test"],
                            label_to_cat=[0] + test.cat_ids, keep_proposals=False)
    atomic_write_json(out, result["detections"], indent=None)
    print(f"[detect test-dev] {model}: {len(result['detections'])} detections on {result['n_images']} images"
          f" -> {out}", flush=True)
    return len(result["detections"])
