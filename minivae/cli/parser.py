"""The command line's parser: the five commands and their flags.

Every default that a ``train`` flag's help states is written from the tables it is taken from
(:mod:`minivae.cli.recipes`), by :func:`stated_default`, so the help cannot say other than what ``train`` does.
"""

from __future__ import annotations

import argparse

from .. import data as datasets
from ..backend import DEVICES
from ..engines import ENGINES
from ..iwae import OBJECTIVES
from ..layers import ACTIVATIONS, INITS
from ..likelihoods import LIKELIHOODS
from ..ops import KERNELS
from ..optim import OPTIMIZERS
from .cmd_exercise import cmd_exercise
from .cmd_gradcheck import GRADCHECK_K_TRAIN, cmd_gradcheck
from .cmd_sample import cmd_sample
from .cmd_score import cmd_score
from .cmd_train import cmd_train
from .flags import EPOCHS, MAX_EPOCHS, NON_NEGATIVE, POSITIVE, fraction, hidden_widths, integer, log_var, number, \
    variance
from .recipes import DATASETS, RING_NOISE_MAX, RING_POINTS_MIN, SCHEDULE_DEFAULTS, train_defaults


def shown(value) -> str:
    """A default as it would be typed on the command line: ``0.002``, ``64,64,64``, ``none``."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def stated_default(dest: str) -> str:
    """What ``train`` gives the flag ``dest`` when it is left out, in words, from
    :func:`~minivae.cli.recipes.train_defaults`: ``100 for digits and mnist, 600 for ring``, and where the
    objective changes it, ``...; 1 with --objective iwae or iwae-dreg``."""
    by_objective = {}  # the words for one objective -> the objectives they hold for
    for objective in OBJECTIVES:
        by_value = {}  # a value -> the data sets that have it
        for dataset in DATASETS:
            table = train_defaults(dataset, objective)
            if dest in table:
                by_value.setdefault(shown(table[dest]), []).append(dataset)
        words = ", ".join(value if len(names) == len(DATASETS) else f"{value} for {' and '.join(names)}"
                          for value, names in by_value.items())
        by_objective.setdefault(words, []).append(objective)
    if len(by_objective) == 1:
        return next(iter(by_objective))
    return "; ".join(f"{words} with --objective {' or '.join(objectives)}"
                     for words, objectives in by_objective.items())


def _train_help(text: str, dest: str) -> str:
    """``text`` followed by the default ``train`` gives ``dest``."""
    return f"{text} (default: {stated_default(dest)})".lstrip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minivae", description="A hand-derived variational autoencoder in NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_flags(p, latent, hidden, activation, samples=1, helped=lambda text, dest: text):
        p.add_argument("--latent", type=POSITIVE, default=latent, help=helped("latent size K", "latent"))
        p.add_argument("--hidden", type=hidden_widths, default=hidden,
                       help=helped("hidden widths, e.g. 128,64 ('none': linear)", "hidden"))
        p.add_argument("--activation", choices=sorted(ACTIVATIONS), default=activation,
                       help=helped("", "activation") or None)
        p.add_argument("--samples", type=POSITIVE, default=samples,
                       help=helped("Monte Carlo samples S of z per example", "samples"))
        p.add_argument("--seed", type=NON_NEGATIVE, default=0,
                       help=helped("the model's seed: initial weights, noise, order", "seed"))

    def data_flags(p, helped):
        p.add_argument("--data-seed", type=NON_NEGATIVE, default=None,
                       help=helped("fixes the ring's points and the train/validation/test split, whatever --seed "
                                   "is", "data_seed"))
        p.add_argument("--ring-points", type=integer(RING_POINTS_MIN), default=None,
                       help=helped(f"points in the ring data set (at least {RING_POINTS_MIN}: one for validation "
                                   "and one for test)", "ring_points"))
        p.add_argument("--ring-noise", type=number(0.0, strict=True, maximum=RING_NOISE_MAX,
                                                   why=" (ten times the ring's radius)"), default=None,
                       help=helped("standard deviation of the ring's added noise", "ring_noise"))
        p.add_argument("--binarize", choices=datasets.BINARIZE, default=None,
                       help=helped("grey levels as they are (none), x > 0.5 (threshold), or x ~ Bernoulli(grey) "
                                   "(stochastic: afresh each training epoch, once for validation and test)",
                                   "binarize"))

    def device_flag(p):
        p.add_argument("--device", choices=DEVICES, default="cpu",
                       help="cpu (NumPy), cuda (CuPy on an NVIDIA GPU) or auto (the GPU if there is one)")

    t = sub.add_parser("train", help="train a VAE, save a checkpoint and a picture, print the test log-likelihood",
                       description="Flags not given take the data set's defaults (minivae.cli.recipes."
                                   "TRAIN_DEFAULTS), or with --resume the resumed run's.")
    t.add_argument("--dataset", choices=DATASETS, default=None, help=_train_help("", "dataset"))
    t.add_argument("--data-dir", default=None, help="where MNIST's IDX files are kept (downloaded on first use)")
    data_flags(t, _train_help)
    t.add_argument("--epochs", type=integer(1, MAX_EPOCHS), default=None, help=_train_help("", "epochs"))
    t.add_argument("--batch-size", type=POSITIVE, default=None, help=_train_help("", "batch_size"))
    t.add_argument("--lr", type=number(0.0, strict=True), default=None, help=_train_help("", "lr"))
    t.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None, help=_train_help("", "optimizer"))
    t.add_argument("--schedule", choices=("constant", "step", "cosine"), default=None,
                   help=_train_help("learning rate: constant --lr; step: times --step-factor every --step-every "
                                    "epochs; cosine: from --lr down to --lr-min over --epochs", "schedule"))
    t.add_argument("--lr-warmup", type=EPOCHS, default=None, metavar="EPOCHS",
                   help=_train_help("learning-rate warm-up: rises linearly from 0 over these epochs (0: none)",
                                    "lr_warmup"))
    t.add_argument("--lr-min", type=number(0.0), default=None,
                   help=f"cosine's final learning rate (default: {shown(SCHEDULE_DEFAULTS['lr_min'])})")
    t.add_argument("--step-every", type=number(0.0, strict=True, maximum=MAX_EPOCHS,
                                               why=" epochs (minivae.cli.flags.MAX_EPOCHS)"), default=None,
                   metavar="EPOCHS",
                   help=f"step schedule: epochs between decays (default: {shown(SCHEDULE_DEFAULTS['step_every'])})")
    t.add_argument("--step-factor", type=fraction, default=None,
                   help=f"step schedule: factor in (0, 1] (default: {shown(SCHEDULE_DEFAULTS['step_factor'])})")
    t.add_argument("--warmup", type=EPOCHS, default=None, help=_train_help("KL warm-up epochs", "warmup"))
    t.add_argument("--likelihood", choices=LIKELIHOODS, default=None, help=_train_help("", "likelihood"))
    t.add_argument("--init-log-var", type=log_var, default=None,
                   help=_train_help("the decoder's starting log-variance (learned-variance Gaussian likelihoods)",
                                    "init_log_var"))
    t.add_argument("--fixed-variance", type=variance, default=None,
                   help="hold the decoder's variance fixed at this value (likelihood gaussian_fixed)")
    t.add_argument("--conditional", action="store_true", default=None,
                   help="train a conditional VAE on one-hot labels")
    t.add_argument("--k", type=POSITIVE, default=1000, help="importance samples for the test log-likelihood")
    t.add_argument("--out", default="runs/minivae", help="output directory")
    t.add_argument("--overwrite", action="store_true",
                   help="--out holds another run: remove its files and start afresh")
    t.add_argument("--resume", action="store_true",
                   help="--out holds an interrupted run: continue it from its checkpoint up to --epochs (default: "
                        "the run's own); every other flag left out is the run's, one given must match it "
                        "(--engine may differ)")
    t.add_argument("--restore-previous", action="store_true",
                   help="put back the run an interrupted --overwrite set aside in --out/.previous/, and stop")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--kernels", choices=KERNELS, default="plain",
                   help="the step's elementwise work as array code, or as fused CUDA kernels (needs --device cuda)")
    t.add_argument("--engine", choices=ENGINES, default=None,
                   help="who computes the step: fast (the default for --objective elbo), or reference (the default, "
                        "and the only engine, for an importance-weighted --objective), through VAE.forward, "
                        "VAE.backward and Adam as the docs derive them; with --resume, default: the run's own")
    model_flags(t, None, None, None, None, helped=_train_help)
    t.add_argument("--objective", choices=OBJECTIVES, default=None,
                   help=_train_help("what training minimises: elbo, iwae (the importance-weighted bound of "
                                    "--k-train samples) or iwae-dreg (the same bound, the doubly reparameterised "
                                    "encoder gradient); the bound trains with --engine reference", "objective"))
    t.add_argument("--k-train", type=POSITIVE, default=None, metavar="K",
                   help=_train_help("importance samples per example of the training bound", "k_train"))
    t.add_argument("--init", choices=INITS, default=None,
                   help=_train_help("initial weights: he (normal, variance 2/fan-in, zero biases) or torch "
                                    "(nn.Linear's uniform)", "init"))
    device_flag(t)
    t.set_defaults(func=cmd_train, seed=None)  # None: the table's, or the resumed run's

    s = sub.add_parser("sample", help="generate new examples from a checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--n", type=POSITIVE, default=50)
    s.add_argument("--label", type=NON_NEGATIVE, default=None, help="class to generate (conditional models)")
    s.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of its mean")
    s.add_argument("--out", default="samples.png", help=".png picture or .npy array")
    s.add_argument("--seed", type=NON_NEGATIVE, default=0)
    device_flag(s)
    s.set_defaults(func=cmd_sample)

    c = sub.add_parser("score", help="importance-weighted log-likelihood of data under a checkpoint")
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--dataset", choices=DATASETS, default=None, help="default: the data the model was trained on")
    c.add_argument("--data-dir", default=None)
    c.add_argument("--split", choices=("train", "val", "test"), default=None, help="default: test")
    data_flags(c, lambda text, dest: f"{text} (default: as the checkpoint records)")
    c.add_argument("--input", default=None, help="score the rows of this .npy file instead of a data set")
    c.add_argument("--k", type=POSITIVE, default=1000)
    c.add_argument("--per-example", action="store_true", help="also print each example's log-likelihood")
    c.add_argument("--seed", type=NON_NEGATIVE, default=0)
    device_flag(c)
    c.set_defaults(func=cmd_score)

    g = sub.add_parser("gradcheck", help="compare every hand-written gradient with central differences")
    g.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli")
    g.add_argument("--data-dim", type=POSITIVE, default=6)
    g.add_argument("--batch", type=POSITIVE, default=4)
    g.add_argument("--condition-dim", type=NON_NEGATIVE, default=0, help="> 0 checks a conditional VAE")
    g.add_argument("--beta", type=number(0.0), default=1.0)
    g.add_argument("--objective", choices=("elbo", "iwae"), default="elbo",
                   help="the loss checked: the negative ELBO, or the importance-weighted bound of --k-train samples "
                        "(iwae-dreg is not the gradient of a loss: tests/test_iwae.py checks it against its surrogate)")
    g.add_argument("--k-train", type=POSITIVE, default=None, metavar="K",
                   help=f"importance samples of the bound (--objective iwae; default: {GRADCHECK_K_TRAIN})")
    model_flags(g, 3, (5, 4), "tanh")
    device_flag(g)
    g.set_defaults(func=cmd_gradcheck)

    e = sub.add_parser("exercise", help="derive a backward pass yourself; checked by finite differences")
    e.add_argument("action", choices=("list", "show", "check"))
    e.add_argument("name", nargs="?", default=None, help="the exercise, as `minivae exercise list` names it")
    e.add_argument("file", nargs="?", default=None, help="check: the Python file with your function")
    e.add_argument("--answer", action="store_true", help="also print the worked answer")
    # None: the judge's own limit, minivae.exercises.DEFAULT_TIMEOUT, stated here in words (importing the judge would
    # cost every command its import); tests/test_cli.py holds the two together
    e.add_argument("--timeout", type=number(0.0, strict=True), default=None,
                   help="check: seconds your file may take to load and answer every case (default 60)")
    e.set_defaults(func=cmd_exercise)
    return parser
