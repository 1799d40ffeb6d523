"""What the commands print and draw about a model: its held-out likelihood in lines that say what each number is,
the picture ``train`` saves, and its active latent units with a warning (and advice) on posterior collapse."""

from __future__ import annotations

import math
import sys

import numpy as np

from .. import data as datasets
from ..backend import to_numpy
from ..images import image_grid
from ..likelihoods import get_likelihood
from ..ring_density import ring_nll
from ..train import NonFiniteError
from .recipes import IMAGE_SHAPES

#: A ring model whose held-out NLL is further than this from the exact value is reported as not learned.
RING_TOLERANCE = 0.05
#: The fewest test examples on which a collapse verdict is given: the sample variance of N points has a relative
#: standard error of sqrt(2 / (N - 1)) for Gaussian data, a third or less from N = 20.
COLLAPSE_MIN_EXAMPLES = 20


def likelihood_lines(model, record: dict, x, c, k: int, rng, what: str, ll=None, flag: str = "--checkpoint") -> list:
    """The held-out negative ELBO and log-likelihood, each line saying what the number is.

    A Bernoulli decoder on grey levels gives a cross-entropy score, not a log-density; on the ring the exact
    NLL (:func:`minivae.ring_density.ring_log_density`) is printed beside the model's, with the gap.
    """
    if ll is None:
        ll = model.log_likelihood(x, k=k, c=c, rng=rng)
    ll = float(ll.mean())
    rows = range(0, x.shape[0], 1024)  # in batches: no (N, D) temporaries for a large N
    elbo = sum(float(model.elbo(x[i:i + 1024], None if c is None else c[i:i + 1024], rng=rng).sum())
               for i in rows) / x.shape[0]
    if not (math.isfinite(ll) and math.isfinite(elbo)):
        raise NonFiniteError(f"{flag}: expected a model that gives the {what} data a finite log-likelihood and "
                             f"ELBO, got {ll} and {elbo}; nothing is reported")
    grey = model.likelihood.unit_interval and any(bool(((x[i:i + 1024] > 0) & (x[i:i + 1024] < 1)).any())
                                                          for i in rows)
    if grey:
        return [f"{what} negative ELBO:                         {-elbo:.3f} nats per example (a Bernoulli "
                f"cross-entropy of grey levels, not a log-density of the data; --binarize gives one)",
                f"{what} importance-weighted Bernoulli score, k={k}: {ll:.3f} nats per example (grey levels: "
                f"NOT a log-likelihood of the data)"]
    lines = [f"{what} negative ELBO:                         {-elbo:.3f} nats per example",
             f"{what} log-likelihood (importance-weighted, k={k}): {ll:.3f} nats per example"]
    if record.get("dataset") == "ring" and x.shape[1] == 2:
        exact = ring_nll(to_numpy(x).astype(np.float64), record["ring_noise"])
        gap = -ll - exact
        lines.append(f"{what} NLL: exact {exact:.3f}, model (k={k}) {-ll:.3f}, gap {gap:.3f} nats per point"
                     + ("" if gap <= RING_TOLERANCE else f"  (more than {RING_TOLERANCE} nat: the model has not "
                                                          "learned the ring)"))
    return lines


def picture(model, dataset: str, x_test, c_test, rng) -> np.ndarray:
    """Samples on top; below, rows of test examples alternating with their reconstructions."""
    if dataset in IMAGE_SHAPES:
        cols = 10
        c_sample = None
        if model.conditional:
            c_sample = datasets.one_hot(np.tile(np.arange(10), 3), 10)  # each class in its own column
        samples = to_numpy(model.sample(30, c_sample, rng=rng))
        originals = x_test[:30]
        recon = to_numpy(model.reconstruct(originals, None if c_test is None else c_test[:30]))
        pairs = np.concatenate([np.stack([originals[i:i + cols], recon[i:i + cols]]).reshape(-1, originals.shape[1])
                                for i in range(0, 30, cols)])
        rows = np.concatenate([samples, np.ones((cols, samples.shape[1])), pairs])
        return image_grid(np.clip(rows, 0, 1), IMAGE_SHAPES[dataset], cols, scale=4 if dataset == "digits" else 1)
    # 2-D data: density images (2-D histograms) of the data and of the model's samples, side by side.
    samples = to_numpy(model.sample(len(x_test) * 10, rng=rng, mean=False))
    edges = np.linspace(-2.0, 2.0, 97)
    images = []
    for points in (x_test, samples):
        hist, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=[edges, edges])
        images.append(1.0 - hist / max(hist.max(), 1.0))
    return np.concatenate([images[0], np.zeros((96, 4)), images[1]], axis=1)[::-1]


def collapse_advice(config) -> str:
    """What may wake a collapsed latent space, among the flags that fit this model."""
    remedies = ["KL warm-up (--warmup)"]
    likelihood = get_likelihood(config.likelihood, config.fixed_variance)
    if likelihood.learned_variance:
        remedies.append("a smaller starting decoder variance (--init-log-var)")
    elif not likelihood.unit_interval:  # a Gaussian whose variance is held fixed
        remedies.append("a smaller fixed decoder variance (--fixed-variance)")
    return f"Try {', '.join(remedies)} or more epochs."


def report_active_units(model, x, c, dataset: str) -> None:
    """Print the active latent units on ``x``; warn on stderr when fewer than the data need are active."""
    active = model.active_units(x, c)
    K = model.config.latent_dim
    activity = ", ".join(f"{a:.3g}" for a in active.activity)
    print(f"active latent units: {active.count} of {K} (Cov_x E_q[z_k] > {active.threshold:g}: {activity})")
    needed = 2 if dataset == "ring" else 1  # the ring is a 2-D manifold; any data set needs at least one
    if active.count >= min(needed, K):
        return
    if x.shape[0] < COLLAPSE_MIN_EXAMPLES:
        print(f"note: no verdict on posterior collapse: the test split has {x.shape[0]} examples, too few to "
              f"estimate the latent units' activity (at least {COLLAPSE_MIN_EXAMPLES})", file=sys.stderr)
        return
    what = "POSTERIOR COLLAPSE" if active.count == 0 else "PARTIAL POSTERIOR COLLAPSE"
    print(f"minivae train: warning: {what}: only {active.count} of {K} latent units are active (the data "
          f"need at least {needed}); the decoder ignores z. {collapse_advice(model.config)}", file=sys.stderr)
