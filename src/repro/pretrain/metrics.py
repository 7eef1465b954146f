"""Evaluation without detection: linear probe and kNN accuracy on frozen pooled features.

The paper evaluates its pretraining only by fine-tuning detectors (Tables 1-4; the detection stage
does that here). These two cheap read-outs of the frozen backbone are ours: features are the
backbone's globally average-pooled C5 in eval mode, standardised with the training fold's mean/std;
the probe is scikit-learn's multinomial ``LogisticRegression`` (L2, ``C``), kNN is a majority vote of
the ``k`` nearest training crops by cosine distance. Crops are split so that train and test never
share a group (a video at the default scale; an image for VOC): grouped k-fold cross-validation
(``GroupKFold``, every crop is tested once) when the set has no fixed split, else its train/test split.
Accuracies are in % (micro-averaged over all test crops of all folds); class-balanced accuracy and
the majority-class rate are reported beside them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["evaluate_features", "folds", "knn_accuracy", "probe_accuracy"]


def folds(y: np.ndarray, group: np.ndarray, split: np.ndarray | None, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays: the fixed split, or ``n_folds`` grouped folds (no group in both)."""
    if split is not None:
        tr, te = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
        if len(tr) == 0 or len(te) == 0:
            raise ValueError("eval: the fixed split needs crops in both train (0) and test (1)")
        return [(tr, te)]
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(group))
    if n_groups < 2:
        raise ValueError(f"eval: the labelled crops come from {n_groups} video(s); a grouped split needs >= 2")
    k = min(n_folds, n_groups)
    return [(tr, te) for tr, te in GroupKFold(n_splits=k).split(np.zeros(len(y)), y, group)]


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(0, keepdims=True)
    std = train.std(0, keepdims=True) + 1e-6
    return (train - mean) / std, (test - mean) / std


def probe_accuracy(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, *, C: float = 1.0, max_iter: int = 1000,
                   seed: int = 0) -> np.ndarray:
    """Predictions of a multinomial logistic regression trained on standardised features."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(ytr)) < 2:  # a fold whose training part has one class: predict it
        return np.full(len(xte), ytr[0])
    xtr, xte = _standardise(xtr, xte)
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    return clf.fit(xtr, ytr).predict(xte)


def knn_accuracy(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, *, k: int = 5) -> np.ndarray:
    """Predictions of a k-nearest-neighbour majority vote, cosine distance on standardised features
    (ties go to the class whose members are nearer: the vote is weighted by 1 + 1e-3 / rank)."""
    xtr, xte = _standardise(xtr, xte)
    xtr = xtr / (np.linalg.norm(xtr, axis=1, keepdims=True) + 1e-12)  # [n, D]
    xte = xte / (np.linalg.norm(xte, axis=1, keepdims=True) + 1e-12)  # [m, D]
    k = min(k, len(xtr))
    sim = xte @ xtr.T  # [m, n]
    nn = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # [m, k]
    n_cls = int(max(ytr.max(), 0)) + 1
    votes = np.zeros((len(xte), n_cls))
    weights = 1.0 + 1e-3 / (1.0 + np.arange(k))  # [k]
    for j in range(k):
        np.add.at(votes, (np.arange(len(xte)), ytr[nn[:, j]]), weights[j])
    return votes.argmax(1)


def _balanced(y: np.ndarray, pred: np.ndarray) -> float:
    classes = np.unique(y)
    return float(np.mean([(pred[y == c] == c).mean() for c in classes]))


def evaluate_features(feats: np.ndarray, y: np.ndarray, group: np.ndarray, split: np.ndarray | None, *,
                      n_folds: int = 5, knn_k: int = 5, probe_C: float = 1.0, probe_max_iter: int = 1000,
                      seed: int = 0) -> dict[str, float]:
    """Probe and kNN accuracy (%) over the folds, plus class-balanced accuracies and fold counts."""
    if feats.ndim != 2 or len(feats) != len(y):
        raise ValueError(f"eval: features must be [M, D] with M = {len(y)} crops, got {feats.shape}")
    pred_probe = np.full(len(y), -1)
    pred_knn = np.full(len(y), -1)
    tested = np.zeros(len(y), bool)
    for tr, te in folds(y, group, split, n_folds):
        pred_probe[te] = probe_accuracy(feats[tr], y[tr], feats[te], C=probe_C, max_iter=probe_max_iter, seed=seed)
        pred_knn[te] = knn_accuracy(feats[tr], y[tr], feats[te], k=knn_k)
        tested[te] = True
    yt = y[tested]
    return {
        "probe": 100.0 * float((pred_probe[tested] == yt).mean()),
        "knn": 100.0 * float((pred_knn[tested] == yt).mean()),
        "probe_balanced": 100.0 * _balanced(yt, pred_probe[tested]),
        "knn_balanced": 100.0 * _balanced(yt, pred_knn[tested]),
        "n_test": int(tested.sum()),
    }
