"""``minivae gradcheck``: every hand-written gradient of a small random VAE against central differences in float64,
one line per parameter; exit status 1 when any relative error is above :data:`minivae.gradcheck.TOLERANCE`."""

from __future__ import annotations

import numpy as np

from .. import data as datasets
from ..backend import to_device
from ..gradcheck import TOLERANCE, model_gradient_errors
from ..iwae import check_objective
from ..model import VAE, VAEConfig
from .flags import OBJECTIVE_FLAGS, requested_device
from .space import check_gradcheck_fits

#: Importance samples of the bound checked under ``--objective iwae`` when ``--k-train`` is not given.
GRADCHECK_K_TRAIN = 4


def cmd_gradcheck(args) -> int:
    if args.objective == "elbo" and args.k_train is not None:
        raise ValueError(f"--k-train: expected only with --objective iwae, got {args.k_train} with --objective elbo")
    k_train = 1 if args.objective == "elbo" else args.k_train or GRADCHECK_K_TRAIN
    check_objective(args.objective, args.samples, k_train, names=OBJECTIVE_FLAGS)
    samples, flag = (args.samples, "--samples") if args.objective == "elbo" else (k_train, "--k-train")
    config = VAEConfig(data_dim=args.data_dim, latent_dim=args.latent, hidden=args.hidden, likelihood=args.likelihood,
                       n_samples=args.samples, condition_dim=args.condition_dim, activation=args.activation,
                       objective=args.objective, k_train=k_train)
    check_gradcheck_fits(config, args.batch, samples, flag)
    rng = np.random.default_rng(args.seed)
    model = VAE(args.data_dim, args.latent, args.hidden, activation=args.activation, likelihood=args.likelihood,
                n_samples=args.samples, condition_dim=args.condition_dim, objective=args.objective, k_train=k_train,
                dtype="float64", seed=args.seed, device=requested_device(args))
    # non-zero everywhere, biases too; drawn on the host, so the check is the same on either device
    model.params.data[:] = to_device(rng.normal(0.0, 0.5, model.params.size), model.device)
    x = rng.random((args.batch, args.data_dim))
    if model.likelihood.unit_interval:  # binary data for a Bernoulli decoder
        x = np.round(x)
    c = datasets.one_hot(rng.integers(0, args.condition_dim, args.batch), args.condition_dim) \
        if args.condition_dim else None
    noise = rng.standard_normal((samples, args.batch, args.latent))
    errors = model_gradient_errors(model, x, c, noise=noise, beta=args.beta)
    print(f"{model}\ncentral differences in float64, step 1e-6; relative error = max|a - n| / max(max|a|, max|n|)")
    print(f"{'parameter':<22} {'shape':<12} {'max relative error':>18}")
    for name, err in errors.items():
        print(f"{name:<22} {str(model.params.shapes[name]):<12} {err:>18.2e}")
    worst = max(errors.values())
    verdict = "PASS" if worst <= TOLERANCE else "FAIL"
    print(f"{verdict}: largest error {worst:.2e} (tolerance {TOLERANCE:.0e})")
    return 0 if verdict == "PASS" else 1
