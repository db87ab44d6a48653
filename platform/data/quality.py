"""Model-based quality scoring: a linear classifier on hashed word uni- and bigrams.

Trained on reference-quality documents (label 1) against random text made from the same words
(label 0: the reference's words drawn independently, so word choice alone does not separate
them and the model must learn which sequences read like real text). Each hashed feature gets
its Naive Bayes log-count ratio as weight; a document's logit is the mean weight of its features,
scaled and shifted by a two-parameter logistic fit so scores are calibrated probabilities. Training
and scoring are a few numpy bincounts.
"""
import hashlib
from dataclasses import dataclass

import numpy as np

FEATURE_BUCKETS = 1 << 18
_SMOOTHING = 1.0


def _bucket(feature: str) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=4).digest(), "little") % FEATURE_BUCKETS


def features(text: str) -> np.ndarray:
    """Bucket ids of the lowercased words and adjacent word pairs of `text`."""
    words = text.lower().split()
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    return np.fromiter((_bucket(g) for g in grams), dtype=np.int64, count=len(grams))


def _mean_weights(weights: np.ndarray, texts: list[str]) -> np.ndarray:
    return np.array([weights[f].mean() if len(f) else 0.0 for f in map(features, texts)])


@dataclass
class QualityClassifier:
    weights: np.ndarray
    scale: float
    bias: float

    def scores(self, texts: list[str]) -> np.ndarray:
        """Probability that each text is reference quality."""
        return 1.0 / (1.0 + np.exp(-(self.scale * _mean_weights(self.weights, texts) + self.bias)))

    @classmethod
    def train(cls, reference: list[str], seed: int = 0) -> "QualityClassifier":
        rng = np.random.default_rng(seed)
        vocabulary = [word for text in reference for word in text.split()]
        random_texts = [" ".join(rng.choice(vocabulary, len(text.split()))) for text in reference]
        counts = [
            np.bincount(np.concatenate([features(t) for t in texts] or [np.zeros(0, np.int64)]), minlength=FEATURE_BUCKETS)
            for texts in (reference, random_texts)
        ]
        good, bad = ((c + _SMOOTHING) / (c.sum() + _SMOOTHING * FEATURE_BUCKETS) for c in counts)
        weights = np.log(good) - np.log(bad)
        x = np.concatenate([_mean_weights(weights, reference), _mean_weights(weights, random_texts)])
        y = np.concatenate([np.ones(len(reference)), np.zeros(len(random_texts))])
        x_scale = float(x.std()) or 1.0
        a, b = 0.0, 0.0
        for _ in range(500):  # logistic fit of (scale, bias) on standardized mean weights
            error = 1.0 / (1.0 + np.exp(-(a * x / x_scale + b))) - y
            a -= float((error * x / x_scale).mean())
            b -= float(error.mean())
        return cls(weights, a / x_scale, b)
