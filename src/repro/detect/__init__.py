"""Detection stage: Faster R-CNN with a Feature Pyramid Network (arXiv 1612.03144), its C4/C5
baselines and Table 1 ablations, COCO metrics with pycocotools, and the detection transfer of
Transitive Invariance (arXiv 1708.02901). The backbone shared with pretraining is
:func:`repro.detect.backbone.tiny_resnet`.
"""
