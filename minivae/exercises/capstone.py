r"""The exercises on the whole model: its forward pass (encoder, z, decoder), and the negative ELBO's gradients with
a Bernoulli decoder and with a Gaussian decoder of learned variance.

The answers are built from the library's forward and backward functions, in the order ``VAE.loss_and_grads`` runs
them (``tests/test_exercises.py`` checks they give the model's own loss and gradients). When the encoder's gradients
are wrong and the decoder's right, :func:`elbo_stage` says which stage went wrong: the gradient that reached the
encoder's output, :math:`[\bar\mu, \overline{\log\sigma^2}]`, is recovered from the learner's last-layer gradients
(exactly, where the batch has at most as many examples as the encoder's last layer has inputs, plus one) and
compared with its two parts, the path through :math:`z` and the KL's.
"""

from __future__ import annotations

import numpy as np

from ..gradcheck import relative_error
from ..kl import kl_backward, kl_forward
from ..likelihoods import bernoulli_nll_backward, bernoulli_nll_forward, gaussian_nll_backward, gaussian_nll_forward
from ..mlp import mlp_backward, mlp_forward
from ..reparam import join_head, reparameterize_backward, reparameterize_forward, split_head
from .checker import FD_TOLERANCE, Exercise, Mistake, constant_factor
from .pieces import TANH, uses, cases, layer_names, layers, pairs


def _vae_inputs(rng, N, D, H, K, S, beta=None, gaussian=False):
    out = {"x": rng.normal(size=(N, D)) if gaussian else rng.random((N, D)), "noise": rng.normal(size=(S, N, K)),
           "encoder": layers(rng, (D, H, 2 * K)), "decoder": layers(rng, (K, H, 2 * D if gaussian else D))}
    if beta is not None:
        out["beta"] = beta
    return out


# --------------------------------------------------------------------------- the forward pass


@uses(mlp_forward, split_head, reparameterize_forward)
def forward_answer(x, noise, encoder, decoder):
    mu, log_var = split_head(mlp_forward(x, encoder, TANH)[0])
    z = reparameterize_forward(mu, log_var, noise)[0]
    logits = mlp_forward(z.reshape(-1, z.shape[-1]), decoder, TANH)[0].reshape(z.shape[0], z.shape[1], -1)
    return mu, log_var, z, logits


def _forward_wrong(x, noise, encoder, decoder, std_power=0.5, swap=False, last_tanh=False):
    (W1, b1), (W2, b2) = encoder
    head = np.tanh(x @ W1 + b1) @ W2 + b2
    k = head.shape[1] // 2
    mu, log_var = (head[:, k:], head[:, :k]) if swap else (head[:, :k], head[:, k:])
    z = mu + np.exp(std_power * log_var) * noise
    (V1, c1), (V2, c2) = decoder
    logits = np.tanh(z @ V1 + c1) @ V2 + c2
    return mu, log_var, z, np.tanh(logits) if last_tanh else logits


FORWARD = Exercise(
    name="forward", function="vae_forward", summary="encoder -> mu, log_var -> z -> decoder logits",
    page="derivations/elbo.md", reference=forward_answer, returns=("mu", "log_var", "z", "logits"),
    cases=cases(_vae_inputs, ("", dict(N=4, D=5, H=3, K=2, S=3), False),
                ("a batch of one, one sample", dict(N=1, D=3, H=4, K=2, S=1), False),
                ("", dict(N=3, D=2, H=5, K=3, S=2), False)),
    covers="S = 1 to 3, a batch of one, non-square weights",
    mistakes=(
        Mistake("sigma^2 for sigma", "z = mu + sigma * noise with sigma = exp(log_var / 2): exp(log_var) is the "
                "variance", lambda **a: _forward_wrong(**a, std_power=1.0)),
        Mistake("halves swapped", "the encoder's output is [mu, log_var] side by side: mu is the first K columns",
                lambda **a: _forward_wrong(**a, swap=True)),
        Mistake("tanh on the logits", "the decoder's last layer has no activation: logits are unconstrained",
                lambda **a: _forward_wrong(**a, last_tanh=True)),
    ),
    derivation=r"""
[mu, log_var] = MLP_enc(x) (the first K columns mu), sigma = exp(log_var / 2) (eq. reparam-fwd)
z_s = mu + sigma * noise_s            (S, N, K): every sample of every example
logits_s = MLP_dec(z_s)               (S, N, D): the S N rows through the decoder at once, reshaped back
""")


# --------------------------------------------------------------------------- the negative ELBO, Bernoulli decoder


def neg_elbo(x, noise, encoder, decoder, beta, gaussian=False):
    """L = beta * mean_n KL_n + mean_{s,n} nll_sn: the loss the exercise differentiates (eq. neg-elbo)."""
    mu, log_var = split_head(mlp_forward(x, encoder, TANH)[0])
    z = reparameterize_forward(mu, log_var, noise)[0]
    out = mlp_forward(z.reshape(-1, z.shape[-1]), decoder, TANH)[0].reshape(z.shape[0], z.shape[1], -1)
    if gaussian:
        mean, dec_log_var = split_head(out)
        nll = gaussian_nll_forward(mean, dec_log_var, x)[0]
    else:
        nll = bernoulli_nll_forward(out, x)[0]
    return beta * kl_forward(mu, log_var)[0].mean() + nll.mean()


def elbo_parts(x, noise, encoder, decoder, beta, gaussian=False, dnll_scale=None, dkl_scale=None):
    """The backward of :func:`neg_elbo` up to the encoder's output: the gradient of [mu, log_var] through z and
    through the KL, kept apart, the encoder's cache and the decoder's gradients. (``dnll_scale`` and ``dkl_scale``
    replace 1/(S N) and beta/N: the catalogue's wrong answers use them.)"""
    n_samples, batch, latent = noise.shape
    enc_out, enc_cache = mlp_forward(x, encoder, TANH)
    mu, log_var = split_head(enc_out)
    z, rep_cache = reparameterize_forward(mu, log_var, noise)
    _, kl_cache = kl_forward(mu, log_var)
    out, dec_cache = mlp_forward(z.reshape(-1, latent), decoder, TANH)
    out = out.reshape(n_samples, batch, -1)
    # L = beta * mean_n KL_n + mean_{s,n} nll_sn
    dnll = np.full((n_samples, batch), 1.0 / (n_samples * batch) if dnll_scale is None else dnll_scale)
    dkl = np.full(batch, beta / batch if dkl_scale is None else dkl_scale)
    if gaussian:
        mean, dec_log_var = split_head(out)
        _, nll_cache = gaussian_nll_forward(mean, dec_log_var, x)
        dout = join_head(*gaussian_nll_backward(dnll, nll_cache))
    else:
        _, nll_cache = bernoulli_nll_forward(out, x)
        dout = bernoulli_nll_backward(dnll, nll_cache)
    dz, dec_grads = mlp_backward(dout.reshape(n_samples * batch, -1), dec_cache, TANH)
    from_z = reparameterize_backward(dz.reshape(n_samples, batch, latent), rep_cache)
    from_kl = kl_backward(dkl, kl_cache)
    return from_z, from_kl, enc_cache, dec_grads


def elbo_backward(x, noise, encoder, decoder, beta, gaussian=False, kl_path=True, **scales):
    """Every gradient of :func:`neg_elbo`: (encoder_grads, decoder_grads)."""
    (dmu_from_z, dlog_var_from_z), (dmu_from_kl, dlog_var_from_kl), enc_cache, dec_grads = elbo_parts(
        x, noise, encoder, decoder, beta, gaussian, **scales)
    dmu = dmu_from_z + dmu_from_kl if kl_path else dmu_from_z  # mu feeds both z and the KL
    dlog_var = dlog_var_from_z + dlog_var_from_kl if kl_path else dlog_var_from_z
    _, enc_grads = mlp_backward(join_head(dmu, dlog_var), enc_cache, TANH, need_dx=False)
    return enc_grads, dec_grads


@uses(elbo_parts)
def elbo_answer(x, noise, encoder, decoder, beta):
    (dmu_from_z, dlog_var_from_z), (dmu_from_kl, dlog_var_from_kl), enc_cache, dec_grads = elbo_parts(
        x, noise, encoder, decoder, beta)
    dmu = dmu_from_z + dmu_from_kl  # mu feeds both z and the KL (eq. elbo-bwd)
    dlog_var = dlog_var_from_z + dlog_var_from_kl
    _, enc_grads = mlp_backward(join_head(dmu, dlog_var), enc_cache, TANH, need_dx=False)
    return enc_grads, dec_grads


@uses(elbo_parts)
def elbo_gaussian_answer(x, noise, encoder, decoder, beta):
    (dmu_from_z, dlog_var_from_z), (dmu_from_kl, dlog_var_from_kl), enc_cache, dec_grads = elbo_parts(
        x, noise, encoder, decoder, beta, gaussian=True)
    dmu = dmu_from_z + dmu_from_kl  # mu feeds both z and the KL (eq. elbo-bwd)
    dlog_var = dlog_var_from_z + dlog_var_from_kl
    _, enc_grads = mlp_backward(join_head(dmu, dlog_var), enc_cache, TANH, need_dx=False)
    return enc_grads, dec_grads


def _factors(a):
    n_samples, batch = a["noise"].shape[:2]
    return {"N": float(batch), "S": float(n_samples), "S N": float(n_samples * batch), "beta": float(a["beta"])}


def elbo_stage(inputs, yours, expected, gaussian=False) -> list:
    """Which stage of the ELBO's backward is wrong, from what the learner returned (see the module's docstring)."""
    if any(relative_error(yours[k], expected[k]) > FD_TOLERANCE for k in expected if k.startswith("decoder")):
        return ["the decoder's gradients are wrong: the reconstruction term's backward (the likelihood's "
                "gradient, its scale 1/(S N), the decoder's MLP backward)"]
    (mu_z, lv_z), (mu_kl, lv_kl), enc_cache, _ = elbo_parts(**inputs, gaussian=gaussian)
    h = enc_cache.affine[1].x  # the input of the encoder's last layer
    if len(h) > h.shape[1] + 1:  # more examples than [h, 1] has columns: the output's gradient is not determined
        return []
    system = np.concatenate([h, np.ones((len(h), 1))], axis=1)  # [dW2; db2] = [h, 1]^T dhead
    target = np.concatenate([yours["encoder dW2"], yours["encoder db2"][None, :]], axis=0)
    dhead, *_ = np.linalg.lstsq(system.T, target, rcond=None)
    if relative_error(system.T @ dhead, target) > FD_TOLERANCE:
        return ["the encoder's dW2 and db2 are not h^T g and sum_n g for any one gradient g of its output: its "
                "last layer's backward is wrong"]
    k = mu_z.shape[1]
    said = []
    for name, mine, from_z, from_kl in (("dmu", dhead[:, :k], mu_z, mu_kl), ("dlog_var", dhead[:, k:], lv_z, lv_kl)):
        if relative_error(mine, from_z + from_kl) < FD_TOLERANCE:
            continue
        factors = [_factors(inputs)]
        if relative_error(mine, from_z) < FD_TOLERANCE:
            said.append(f"your {name} (the gradient reaching the encoder's output) has no KL part: mu and log_var "
                        f"feed both z and the KL, so {name} = {name}_from_z + {name}_from_kl")
        elif relative_error(mine, from_kl) < FD_TOLERANCE:
            said.append(f"your {name} (the gradient reaching the encoder's output) has no part through z: only the "
                        f"KL's")
        elif constant_factor("", [mine - from_z], [from_kl], factors):
            said.append(f"your {name} is wrong in its KL part: the KL part of {name}"
                        + constant_factor("", [mine - from_z], [from_kl], factors))
        elif constant_factor("", [mine - from_kl], [from_z], factors):
            said.append(f"your {name} is wrong in its path through z (the reparameterization's backward or what "
                        f"reaches z): the part through z of {name}"
                        + constant_factor("", [mine - from_kl], [from_z], factors))
        else:
            said.append(f"your {name} (the gradient reaching the encoder's output) is wrong in its path through z "
                        f"or in its KL part, or both")
    if not said:
        said.append("your dmu and dlog_var are right: the encoder's MLP backward is wrong (its first layer)")
    return said


def _elbo_exercise(name, function, summary, answer, gaussian, stub_decoder):
    return Exercise(
        name=name, function=function, summary=summary, page="derivations/elbo.md", reference=answer,
        returns=(layer_names("encoder ", 2), layer_names("decoder ", 2)),
        cases=cases(lambda rng, **sizes: _vae_inputs(rng, **sizes, gaussian=gaussian),
                    ("", dict(N=4, D=5, H=3, K=2, S=3, beta=0.7), True),
                    ("a batch of one, one sample", dict(N=1, D=4, H=3, K=2, S=1, beta=1.3), False),
                    ("", dict(N=2, D=6, H=4, K=3, S=4, beta=0.4), False)),
        covers="N, S and beta varied, a batch of one",
        loss=lambda a: float(neg_elbo(**a, gaussian=gaussian)),
        wrt=lambda a: {**pairs("encoder ", a["encoder"]), **pairs("decoder ", a["decoder"])},
        factors=_factors,
        diagnose=lambda inputs, yours, expected: elbo_stage(inputs, yours, expected, gaussian),
        mistakes=(
            Mistake("1/N missing", "a missing 1/N: the loss averages over the N examples, so every gradient "
                    "carries 1/N", lambda **a: elbo_backward(**a, gaussian=gaussian, dnll_scale=1.0 / len(a["noise"]),
                                                            dkl_scale=a["beta"])),
            Mistake("1/S missing", "a missing 1/S: the reconstruction term averages over the S samples, so dnll = "
                    "1/(S N), not 1/N", lambda **a: elbo_backward(**a, gaussian=gaussian,
                                                                  dnll_scale=1.0 / a["noise"].shape[1])),
            Mistake("beta missing", "a missing beta: the KL term is beta * mean_n KL_n, so dKL_n = beta / N",
                    lambda **a: elbo_backward(**a, gaussian=gaussian, dkl_scale=1.0 / a["noise"].shape[1])),
            Mistake("KL path missing", "the KL's own gradient is missing: mu and log_var feed both z and the KL, "
                    "so dmu = dmu_from_z + dmu_from_kl (and the same for dlog_var)",
                    lambda **a: elbo_backward(**a, gaussian=gaussian, kl_path=False)),
        ),
        derivation=rf"""
L = beta/N sum_n KL_n + 1/(S N) sum_{{s,n}} nll_sn (eq. neg-elbo). Backward (eq. elbo-bwd):
  dnll_sn = 1/(S N),  dKL_n = beta/N
  {stub_decoder}
  dz, decoder grads = MLP backward
  dmu = sum_s dz_s + dKL * mu;   dlog_var = sigma/2 sum_s dz_s eps_s + dKL (sigma^2 - 1)/2
  encoder grads = MLP backward of [dmu, dlog_var]
""")


ELBO = _elbo_exercise("elbo", "neg_elbo_backward",
                      "the whole negative ELBO (tanh MLPs, Bernoulli decoder): every dW, db", elbo_answer, False,
                      "dlogits = Bernoulli backward")
ELBO_GAUSSIAN = _elbo_exercise(
    "elbo_gaussian", "neg_elbo_gaussian_backward",
    "the negative ELBO, Gaussian decoder of learned variance: every dW, db", elbo_gaussian_answer, True,
    "[dmean, dlog_var] = Gaussian backward (eq. gauss-grad), side by side as the decoder's output is")
