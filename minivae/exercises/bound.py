r"""The exercise on training with the importance-weighted bound: every gradient of the negative k-sample bound of a
whole model (tanh MLPs, Bernoulli decoder), derived in ``docs/derivations/iwae_training.md``.

The loss is :math:`\mathcal L = -\frac1N\sum_n \log\frac1S\sum_s w_{sn}` with
:math:`\log w_{sn} = \log p(x_n|z_{sn}) + \beta(\log p(z_{sn}) - \log q(z_{sn}|x_n))` (eqs. ``iwae-logw``,
``iwae-loss``). Its gradient is the self-normalised weights :math:`\tilde w_{sn} = \operatorname{softmax}_s(\log w)`
flowing into each sample's gradient: the decoder's, the path through :math:`z_{sn}` and the score terms of
:math:`\log q` (eqs. ``iwae-softmax``, ``iwae-bwd``). The answer is composed from the library's own pieces
(:mod:`minivae.iwae`) in the order :meth:`VAE.backward <minivae.model.VAE.backward>` runs them
(``tests/test_exercises.py`` checks it gives the model's own gradients); the wrong answers are written apart, in plain
NumPy, so that each is the gradient of a loss a learner could mean.
"""

from __future__ import annotations

import numpy as np

from ..gradcheck import relative_error
from ..iwae import (log_mean_exp_backward, log_mean_exp_forward, log_normal_backward, log_normal_forward,
                    log_prior_backward, log_prior_forward, log_weights_backward, log_weights_forward)
from ..likelihoods import LOG_2PI, bernoulli_nll_backward, bernoulli_nll_forward
from ..mlp import mlp_backward, mlp_forward
from ..reparam import join_head, reparameterize_backward, reparameterize_forward, split_head
from .checker import FD_TOLERANCE, Exercise, Mistake
from .pieces import TANH, cases, layer_names, layers, pairs, uses


def bound_inputs(rng, N, D, H, K, S, beta, logit_scale=1.0):
    """One case: x (N, D) in [0, 1], noise (S, N, K), the two MLPs' weights and beta; ``logit_scale`` scales the
    decoder's last layer (and makes x binary) for the extreme case."""
    decoder = layers(rng, (K, H, D))
    x = rng.random((N, D))
    if logit_scale != 1.0:  # logits in the hundreds on binary x: log-weights of -600 to -1800, exp() of each is 0
        (V1, c1), (V2, c2) = decoder
        decoder = [(V1, c1), (V2 * logit_scale, c2 * logit_scale)]
        x = (x > 0.5).astype(np.float64)
    return {"x": x, "noise": rng.normal(size=(S, N, K)), "encoder": layers(rng, (D, H, 2 * K)), "decoder": decoder,
            "beta": beta}


def log_weights(x, noise, encoder, decoder, beta):
    """The log-weights (S, N) of eq. ``iwae-logw``, computed by the library's forward functions."""
    mu, log_var = split_head(mlp_forward(x, encoder, TANH)[0])
    z = reparameterize_forward(mu, log_var, noise)[0]
    S, N, K = noise.shape
    logits = mlp_forward(z.reshape(S * N, K), decoder, TANH)[0].reshape(S, N, -1)
    return log_weights_forward(-bernoulli_nll_forward(logits, x)[0], log_prior_forward(z)[0],
                               log_normal_forward(z, mu, log_var)[0], beta)


def neg_iwae(x, noise, encoder, decoder, beta):
    """L = -mean_n log (1/S) sum_s w_sn: the loss the exercise differentiates (eq. ``iwae-loss``)."""
    return -log_mean_exp_forward(log_weights(x, noise, encoder, decoder, beta))[0].mean()


@uses(log_mean_exp_backward, log_weights_backward, log_prior_backward, log_normal_backward)
def bound_answer(x, noise, encoder, decoder, beta):
    S, N, K = noise.shape
    enc_out, enc_cache = mlp_forward(x, encoder, TANH)
    mu, log_var = split_head(enc_out)
    z, rep_cache = reparameterize_forward(mu, log_var, noise)  # (S, N, K)
    logits, dec_cache = mlp_forward(z.reshape(S * N, K), decoder, TANH)
    nll, nll_cache = bernoulli_nll_forward(logits.reshape(S, N, -1), x)  # (S, N)
    log_pz, prior_cache = log_prior_forward(z)
    log_qz, q_cache = log_normal_forward(z, mu, log_var)
    _, lme_cache = log_mean_exp_forward(log_weights_forward(-nll, log_pz, log_qz, beta))

    # L = -mean_n bound_n: each log-weight gets -w~_sn / N (eq. iwae-softmax)
    dlog_w = log_mean_exp_backward(np.full(N, -1.0 / N), lme_cache)
    dlog_px, dlog_pz, dlog_qz = log_weights_backward(dlog_w, beta)  # eq. iwae-logw
    dlogits = bernoulli_nll_backward(-dlog_px, nll_cache)  # nll = -log p(x|z)
    dz_from_dec, dec_grads = mlp_backward(dlogits.reshape(S * N, -1), dec_cache, TANH)
    dz_from_prior = log_prior_backward(dlog_pz, prior_cache)  # eq. iwae-prior-bwd
    dz_from_q, dmu_score, dlog_var_score = log_normal_backward(dlog_qz, q_cache)  # eq. iwae-q-bwd
    dz = dz_from_dec.reshape(S, N, K) + dz_from_prior + dz_from_q  # z_s feeds all three terms of log w_s
    dmu_path, dlog_var_path = reparameterize_backward(dz, rep_cache)
    dmu = dmu_path + dmu_score  # mu and log_var reach log q through z and directly (eq. iwae-bwd)
    dlog_var = dlog_var_path + dlog_var_score
    _, enc_grads = mlp_backward(join_head(dmu, dlog_var), enc_cache, TANH, need_dx=False)
    return enc_grads, dec_grads


# --------------------------------------------------------------------------- wrong answers, in plain NumPy


def _layers_backward(dout, h, weights):
    """The tanh MLP's backward from its input ``h``: (dh, [(dW, db), ...])."""
    hs = [h]
    for W, b in weights[:-1]:
        hs.append(np.tanh(hs[-1] @ W + b))
    grads, da = [], dout
    for layer in reversed(range(len(weights))):
        grads.insert(0, (hs[layer].T @ da, da.sum(axis=0)))
        dh = da @ weights[layer][0].T
        da = dh * (1.0 - hs[layer] ** 2) if layer > 0 else dh
    return dh, grads


def bound_wrong(x, noise, encoder, decoder, beta, weighting="softmax", analytic_kl=False, score=True, dreg=False):
    """The gradient with one thing changed: the weights ``"uniform"`` (1/S) or ``"unnormalised"``
    (exp(a - max a), not divided by their sum); ``analytic_kl``: the weights and log-mean-exp of log p(x|z) alone
    plus beta times the analytic KL, as in the ELBO; ``score=False``: mu and log_var only through z; ``dreg``:
    the doubly reparameterised encoder gradient (eq. ``dreg``) in place of the gradient."""
    S, N, K = noise.shape
    h = x
    for W, b in encoder[:-1]:
        h = np.tanh(h @ W + b)
    head = h @ encoder[-1][0] + encoder[-1][1]
    mu, log_var = head[:, :K], head[:, K:]
    std = np.exp(0.5 * log_var)
    z = mu + std * noise
    h = z.reshape(S * N, K)
    for W, b in decoder[:-1]:
        h = np.tanh(h @ W + b)
    logits = (h @ decoder[-1][0] + decoder[-1][1]).reshape(S, N, -1)
    log_px = -(np.logaddexp(0.0, logits) - x * logits).sum(axis=-1)
    log_pz = -0.5 * (LOG_2PI + z * z).sum(axis=-1)
    log_qz = -0.5 * (LOG_2PI + log_var + noise * noise).sum(axis=-1)
    a = log_px if analytic_kl else log_px + beta * (log_pz - log_qz)
    e = np.exp(a - a.max(axis=0))
    w = {"softmax": e / e.sum(axis=0), "uniform": np.full(a.shape, 1.0 / S), "unnormalised": e}[weighting]
    da = -w / N  # (S, N)
    dlogits = -da[..., None] * (1.0 / (1.0 + np.exp(-logits)) - x)
    dz, dec_grads = _layers_backward(dlogits.reshape(S * N, -1), z.reshape(S * N, K), decoder)
    dz = dz.reshape(S, N, K)
    if not analytic_kl:
        dz = dz + da[..., None] * beta * (-z + (z - mu) / std ** 2)  # d/dz of beta (log p(z) - log q(z|x))
    if dreg:  # the path scaled by 1 - beta + beta w~ (w~^2 in all at beta = 1), the score terms dropped
        dz, score = dz * (1.0 - beta + beta * w)[..., None], False
    dmu = dz.sum(axis=0)
    dlog_var = 0.5 * std * (dz * noise).sum(axis=0)
    if analytic_kl:
        dmu = dmu + beta / N * mu
        dlog_var = dlog_var + beta / N * 0.5 * (np.exp(log_var) - 1.0)
    elif score:  # d/dmu and d/dlog_var of -beta log q(z|x), z held fixed
        dmu = dmu + beta * (da[..., None] * -(z - mu) / std ** 2).sum(axis=0)
        dlog_var = dlog_var + beta * (da[..., None] * -0.5 * ((z - mu) ** 2 / std ** 2 - 1.0)).sum(axis=0)
    _, enc_grads = _layers_backward(np.concatenate([dmu, dlog_var], axis=1), x, encoder)
    return enc_grads, dec_grads


def bound_stage(inputs, yours, expected) -> list:
    """Which half of the backward is wrong: the decoder's gradients carry the weights; if they are right, what
    reaches the encoder is not."""
    if any(relative_error(yours[k], expected[k]) > FD_TOLERANCE for k in expected if k.startswith("decoder")):
        return ["the decoder's gradients are wrong: each sample's Bernoulli gradient (sigmoid(l_sn) - x_n) carries "
                "the weight w~_sn / N, w~ the softmax over the S samples of the log-weights (eqs. iwae-softmax, "
                "iwae-bwd)"]
    return ["the decoder's gradients are right, so the weights w~ are: what reaches the encoder's output is wrong. "
            "dz_s collects the decoder's, log p(z_s)'s and log q(z_s|x)'s gradients, each times -w~_s / N "
            "(eqs. iwae-prior-bwd, iwae-q-bwd); mu and log_var also reach log q directly, z held fixed (eq. iwae-bwd)"]


def _factors(a):
    n_samples, batch = a["noise"].shape[:2]
    return {"N": float(batch), "S": float(n_samples), "beta": float(a["beta"])}


BOUND = Exercise(
    name="iwae_grad", function="neg_iwae_backward",
    summary="the negative k-sample bound of a whole model (tanh MLPs, Bernoulli decoder): every dW, db",
    page="derivations/iwae_training.md", reference=bound_answer,
    returns=(layer_names("encoder ", 2), layer_names("decoder ", 2)),
    cases=cases(bound_inputs, ("", dict(N=4, D=5, H=3, K=2, S=3, beta=0.7), True),
                ("a batch of one, one sample", dict(N=1, D=4, H=3, K=2, S=1, beta=1.0), False),
                ("", dict(N=3, D=6, H=4, K=3, S=5, beta=1.0), False),
                ("", dict(N=2, D=3, H=5, K=1, S=4, beta=0.4), False),
                ("log-weights near -1000: exp() of them is 0", dict(N=3, D=16, H=4, K=2, S=4, beta=1.0,
                                                                    logit_scale=300.0), False)),
    covers="S = 1 to 5, a batch of one, beta varied, log-weights near -1000",
    loss=lambda a: float(neg_iwae(**a)),
    wrt=lambda a: {**pairs("encoder ", a["encoder"]), **pairs("decoder ", a["decoder"])},
    factors=_factors, diagnose=bound_stage,
    mistakes=(
        Mistake("uniform weights", "each sample weighted 1/S: that is the gradient of the mean of the log-weights "
                "(an ELBO with a sampled KL); the bound's log-mean-exp gives each sample its self-normalised weight "
                "w~_s = softmax_s(log w) (eq. iwae-softmax)", lambda **a: bound_wrong(**a, weighting="uniform")),
        Mistake("weights not normalised", "the weights exp(log w_s - max log w) are not divided by their sum: "
                "d/d log w_s of log sum_s' w_s' is w_s / sum_s' w_s', and the weights sum to 1 over the S samples "
                "(eq. iwae-softmax)", lambda **a: bound_wrong(**a, weighting="unnormalised")),
        Mistake("analytic KL", "the analytic KL's gradient added as in the ELBO: in the bound log p(z_s) - log "
                "q(z_s|x) is part of each log-weight, evaluated at each sample inside the log-mean-exp, and weighted "
                "by w~_s like the rest (eq. iwae-logw; the analytic KL applies only for S = 1 in expectation)",
                lambda **a: bound_wrong(**a, analytic_kl=True)),
        Mistake("score terms missing", "mu and log_var reach log q(z_s|x) twice: through z_s and directly, z_s held "
                "fixed; the direct (score) terms, w~_s (z_s - mu) / sigma^2 and w~_s ((z_s - mu)^2 / sigma^2 - 1) / 2 "
                "times beta / N, are missing (eqs. iwae-q-bwd, iwae-bwd)", lambda **a: bound_wrong(**a, score=False)),
        Mistake("DReG", "the doubly reparameterised estimate (w~_s^2 on the path through z, no score terms) has the "
                "gradient's expectation over the noise, not its value at this noise: the exercise asks for the "
                "gradient of L itself (eq. iwae-bwd; eq. dreg is the other estimator)",
                lambda **a: bound_wrong(**a, dreg=True)),
    ),
    derivation=r"""
a_sn = log w_sn = log p(x_n|z_sn) + beta (log p(z_sn) - log q(z_sn|x_n))      (eq. iwae-logw)
L = -1/N sum_n log (1/S) sum_s exp(a_sn), formed around max_s a_sn            (eq. iwae-loss)
Backward:
  da_sn = -w~_sn / N,  w~_sn = exp(a_sn) / sum_s' exp(a_s'n)                    (eq. iwae-softmax)
  dlogits_sn = -da_sn (sigmoid(l_sn) - x_n);  dz_s, decoder grads = MLP backward
  dz_s += da_s * beta * (-z_s + (z_s - mu) / sigma^2)      log p(z_s) and log q(z_s|x) through z (eqs. iwae-prior-bwd,
                                                           iwae-q-bwd)
  dmu      = sum_s dz_s - beta sum_s da_s (z_s - mu) / sigma^2                 path + score (eq. iwae-bwd)
  dlog_var = sigma/2 sum_s dz_s eps_s - beta/2 sum_s da_s ((z_s - mu)^2 / sigma^2 - 1)
  encoder grads = MLP backward of [dmu, dlog_var]
At fixed eps, log q(z_s|x) = -1/2 sum_k (log 2 pi + log sigma_k^2 + eps_sk^2): its path and score terms add up to
d log q / d log sigma^2 = -1/2 and d log q / d mu = 0, a shorter route to the same answer.
""")
