"""Transitive Invariance part 2 (Wang, He, Gupta, arXiv 1708.02901, Sec. 3.3-4): Triplet-Siamese
pretraining with the ranking loss on the graph stage's pairs, per arm (scratch / intra / inter /
transitive), and its evaluation without detection (linear probe and kNN on labelled crops)."""
