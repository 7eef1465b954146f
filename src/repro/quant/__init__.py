"""Network quantization (Choi, El-Khamy & Lee, "Towards the Limit of Network Quantization", ICLR 2017, arXiv 1612.01543)."""
