"""GANs and mode coverage: plain GAN, mode-regularized GAN and MDGAN (Che et al., arXiv 1612.02136),
MGAN, a mixture of generators (Hoang et al., arXiv 1708.02556).

Modules: ``data`` (loaders), ``models`` (builders), ``losses`` (pure loss terms), ``engine`` (the
training loop), ``metrics`` (mode coverage, histogram KL, exact W1, inception/MODE scores),
``classifier`` (the in-pipeline scorer network and the optional Inception network), ``claims``
(summaries and verdicts), ``plots`` and ``cli``.
"""
