"""Bad input gets a clear error: one catalogue for every public entry point.

Each case is ``(call, error, name)``: ``call(f)`` (``f`` holds the models and files built once by the fixture)
must raise ``error``, and the message must name ``name`` -- the argument, flag or file at fault -- in the one
form of :mod:`minivae.validate`: ``"<argument>: expected <what>, got <what was received>"``.

Command-line cases run ``minivae.cli.main([...])`` and turn its two ways of failing into exceptions:

* ``UsageError``: a flag whose value is wrong on its own (``--epochs 0``, ``--lr -1``, an unknown
  ``--activation``) is refused by argparse before anything runs: ``SystemExit(2)``, the flag named on stderr.
* ``CommandFailed``: a problem found while running (a checkpoint that cannot be read, data that do not fit
  the model) makes ``main`` return exit code 2 with the flag or argument named on stderr.

Neither may print a traceback.
"""

import contextlib
import gzip
import io
import json
import struct
from types import SimpleNamespace
from typing import Callable, NamedTuple

import numpy as np
import pytest

from minivae import data
from minivae.checkpoint import CheckpointError, load_checkpoint
from minivae.cli import main
from minivae.images import image_grid, write_png
from minivae.model import CVAE, VAE, VAEConfig, build_model
from minivae.serialize import load_model, load_trainer, save_model, save_trainer
from minivae.train import Trainer, fit


class UsageError(Exception):
    """argparse refused a flag: SystemExit(2); the message is what it printed on stderr."""


class CommandFailed(Exception):
    """``minivae.cli.main`` returned exit code 2; the message is what it printed on stderr."""


def cli(*argv):
    """A call that runs the command line and raises UsageError / CommandFailed with its stderr."""
    def call(f):
        argv_ = [str(a).format(**vars(f)) for a in argv]  # "{model_file}" -> the fixture's path
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv_)
            except SystemExit as exit:
                assert exit.code == 2
                raise UsageError(err.getvalue()) from None
            except MemoryError as exc:  # must never escape the command line
                raise AssertionError(f"MemoryError escaped main: {exc}") from None
        assert "Traceback" not in err.getvalue()
        if code == 2:
            raise CommandFailed(err.getvalue())
        return code

    return call


class Case(NamedTuple):
    id: str
    call: Callable
    error: type
    name: str


X = np.random.default_rng(0).random((5, 4))  # valid data for every likelihood: (N, D) = (5, 4) in [0, 1)
C = np.eye(3)[[0, 1, 2, 0, 1]]  # conditions for the CVAE: (5, 3)


def idx_bytes(array, code=0x08):
    """An IDX file: 00 00, the type code, the number of dimensions, each dimension, the big-endian values."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(data.IDX_DTYPES[code]).tobytes()


@pytest.fixture(scope="module")
def f(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_input")
    ns = SimpleNamespace(
        tmp=tmp,
        vae=VAE(4, 2, (3,), likelihood="gaussian_shared", seed=0),  # Gaussian: any finite data
        bern=VAE(4, 2, (3,), likelihood="bernoulli", seed=0),
        cvae=CVAE(4, 3, latent_dim=2, hidden=(3,), likelihood="gaussian_shared", seed=0),
    )
    # checkpoints
    ns.model_file = tmp / "model.npz"
    save_model(ns.model_file, VAE(64, 2, (8,), seed=0))
    ns.cvae_file = tmp / "cvae.npz"
    save_model(ns.cvae_file, CVAE(64, 10, latent_dim=2, hidden=(8,), seed=0))
    ns.ring_file = tmp / "ring_model.npz"
    save_model(ns.ring_file, VAE(2, 2, (8,), likelihood="gaussian_shared", seed=0))
    ns.truncated_file = tmp / "truncated.npz"
    ns.truncated_file.write_bytes(ns.model_file.read_bytes()[:200])
    ns.pickled_file = tmp / "pickled.npz"
    header = {"format": "minivae-checkpoint", "version": 2, "meta": {},
              "manifest": {"params": {"shape": [1], "dtype": "object"}}}
    with open(ns.pickled_file, "wb") as fh:
        np.savez(fh, params=np.array([{"a": 1}], dtype=object),
                 __meta__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    # data files for the command line
    ns.x3d_file, ns.int_file, ns.wrong_d_file = tmp / "x3d.npy", tmp / "xint.npy", tmp / "wrong_d.npy"
    np.save(ns.x3d_file, np.zeros((2, 2, 64)))
    np.save(ns.int_file, np.zeros((2, 64), dtype=np.int64))
    np.save(ns.wrong_d_file, np.zeros((2, 5)))
    ns.not_npy_file = tmp / "not_npy.npy"
    ns.not_npy_file.write_bytes(b"plain text, not an array")
    # IDX files
    good = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))
    ns.bad_magic, ns.short_data, ns.short_header, ns.trailing, ns.bad_gzip = (
        tmp / name for name in ("bad_magic.idx", "short_data.idx", "short_header.idx", "trailing.idx", "bad.gz"))
    ns.bad_magic.write_bytes(b"\x01\x02" + good[2:])
    ns.short_data.write_bytes(good[:-1])
    ns.short_header.write_bytes(good[:9])
    ns.trailing.write_bytes(good + b"\x00")
    ns.bad_gzip.write_bytes(gzip.compress(good)[:-6])
    ns.missing_dir = tmp / "no_such_dir"
    return ns


def junk_fetch(url, dest):
    dest.write_bytes(b"not what the checksum promises")


CASES = [
    # ------------------------------------------------------------------ model construction
    Case("VAE data_dim missing", lambda f: VAE(), TypeError, "data_dim"),
    Case("VAE data_dim 0", lambda f: VAE(0), ValueError, "data_dim"),
    Case("VAE latent_dim 0", lambda f: VAE(4, 0), ValueError, "latent_dim"),
    Case("VAE hidden contains 0", lambda f: VAE(4, 2, (8, 0)), ValueError, "hidden"),
    Case("VAE hidden contains -1", lambda f: VAE(4, 2, (-1,)), ValueError, "hidden"),
    Case("VAE hidden contains a float", lambda f: VAE(4, 2, (3.5,)), TypeError, "hidden"),
    Case("VAE hidden a bare int", lambda f: VAE(4, 2, 8), TypeError, "hidden"),
    Case("VAE decoder_hidden 0", lambda f: VAE(4, 2, (3,), decoder_hidden=(0,)), ValueError, "decoder_hidden"),
    Case("VAE unknown activation", lambda f: VAE(4, activation="swish"), ValueError, "activation"),
    Case("VAE unknown likelihood", lambda f: VAE(4, likelihood="poisson"), ValueError, "likelihood"),
    Case("VAE fixed_variance 0", lambda f: VAE(4, likelihood="gaussian_fixed", fixed_variance=0.0), ValueError,
         "fixed_variance"),
    Case("VAE n_samples 0", lambda f: VAE(4, n_samples=0), ValueError, "n_samples"),
    Case("VAE dtype float16", lambda f: VAE(4, dtype="float16"), ValueError, "dtype"),
    Case("VAE dtype not a dtype", lambda f: VAE(4, dtype="floaty"), ValueError, "dtype"),
    Case("VAE seed -1", lambda f: VAE(4, seed=-1), ValueError, "seed"),
    Case("VAE condition_dim -1", lambda f: VAE(4, condition_dim=-1), ValueError, "condition_dim"),
    Case("VAE config a dict", lambda f: VAE(config={"data_dim": 4}), TypeError, "config"),
    Case("CVAE without condition_dim", lambda f: CVAE(4), ValueError, "condition_dim"),
    Case("CVAE condition_dim 0", lambda f: CVAE(4, 0), ValueError, "condition_dim"),
    Case("VAEConfig latent_dim float", lambda f: VAEConfig(4, latent_dim=1.5), TypeError, "latent_dim"),
    Case("build_model config a dict", lambda f: build_model({"data_dim": 4}), TypeError, "config"),
    # ------------------------------------------------------------------ loss_and_grads / forward / loss
    Case("x 1-D", lambda f: f.vae.loss_and_grads(X[0]), ValueError, "x"),
    Case("x 3-D", lambda f: f.vae.loss_and_grads(X[None]), ValueError, "x"),
    Case("x a Python list", lambda f: f.vae.loss_and_grads(X.tolist()), TypeError, "x"),
    Case("x integer", lambda f: f.vae.forward(np.ones((2, 4), dtype=np.int64)), TypeError, "x"),
    Case("x object", lambda f: f.vae.forward(X.astype(object)), TypeError, "x"),
    Case("x float16", lambda f: f.vae.forward(X.astype(np.float16)), TypeError, "x"),
    Case("x complex", lambda f: f.vae.forward(X.astype(complex)), TypeError, "x"),
    Case("x wrong feature count", lambda f: f.vae.loss(np.ones((2, 5))), ValueError, "x"),
    Case("x empty batch", lambda f: f.vae.loss_and_grads(np.ones((0, 4))), ValueError, "x"),
    Case("x NaN", lambda f: f.vae.loss_and_grads(np.where(X > 0.5, np.nan, X)), ValueError, "x"),
    Case("x infinity", lambda f: f.vae.loss(np.full((2, 4), -np.inf)), ValueError, "x"),
    Case("Bernoulli x above 1", lambda f: f.bern.loss_and_grads(X + 1.0), ValueError, "x"),
    Case("Bernoulli x below 0", lambda f: f.bern.loss_and_grads(-X), ValueError, "x"),
    Case("c given to a plain VAE", lambda f: f.vae.loss_and_grads(X, C), ValueError, "c"),
    Case("c missing for a CVAE", lambda f: f.cvae.loss_and_grads(X), ValueError, "c"),
    Case("c wrong size", lambda f: f.cvae.loss_and_grads(X, np.eye(4)[[0, 1, 2, 3, 0]]), ValueError, "c"),
    Case("c wrong rows", lambda f: f.cvae.forward(X, C[:3]), ValueError, "c"),
    Case("c integer", lambda f: f.cvae.forward(X, C.astype(int)), TypeError, "c"),
    Case("noise wrong shape", lambda f: f.vae.forward(X, noise=np.zeros((1, 5, 3))), ValueError, "noise"),
    Case("noise 2-D", lambda f: f.vae.forward(X, noise=np.zeros((5, 2))), ValueError, "noise"),
    Case("noise zero samples", lambda f: f.vae.loss_and_grads(X, noise=np.zeros((0, 5, 2))), ValueError, "noise"),
    Case("noise a list", lambda f: f.vae.loss_and_grads(X, noise=[[[0.0, 0.0]] * 5]), TypeError, "noise"),
    Case("noise NaN", lambda f: f.vae.loss_and_grads(X, noise=np.full((1, 5, 2), np.nan)), ValueError, "noise"),
    Case("beta negative", lambda f: f.vae.loss_and_grads(X, beta=-0.5), ValueError, "beta"),
    Case("beta NaN", lambda f: f.vae.loss(X, beta=float("nan")), ValueError, "beta"),
    Case("rng a seed", lambda f: f.vae.forward(X, rng=3), TypeError, "rng"),
    # ------------------------------------------------------------------ encode, decode, generate, score
    Case("encode x wrong features", lambda f: f.vae.encode(np.ones((2, 3))), ValueError, "x"),
    Case("encode CVAE c missing", lambda f: f.cvae.encode(X), ValueError, "c"),
    Case("decode z wrong latent size", lambda f: f.vae.decode(np.ones((2, 3))), ValueError, "z"),
    Case("decoder_output z 1-D", lambda f: f.vae.decoder_output(np.ones(2)), ValueError, "z"),
    Case("decode z integer", lambda f: f.vae.decode(np.ones((2, 2), dtype=int)), TypeError, "z"),
    Case("reconstruct NaN", lambda f: f.vae.reconstruct(np.full((1, 4), np.nan)), ValueError, "x"),
    Case("sample n=0", lambda f: f.vae.sample(0), ValueError, "n"),
    Case("sample n float", lambda f: f.vae.sample(2.0), TypeError, "n"),
    Case("sample CVAE c rows", lambda f: f.cvae.sample(3, C), ValueError, "c"),
    Case("sample mean not a bool", lambda f: f.vae.sample(3, mean="no"), TypeError, "mean"),
    Case("sample rng a seed", lambda f: f.vae.sample(3, rng=5), TypeError, "rng"),
    Case("log_likelihood k=0", lambda f: f.vae.log_likelihood(X, k=0), ValueError, "k"),
    Case("log_likelihood batch_size=0", lambda f: f.vae.log_likelihood(X, batch_size=0), ValueError, "batch_size"),
    Case("log_likelihood x integer", lambda f: f.vae.log_likelihood(np.ones((2, 4), dtype=int)), TypeError, "x"),
    Case("log_likelihood CVAE c missing", lambda f: f.cvae.log_likelihood(X, k=2), ValueError, "c"),
    Case("elbo n_samples=0", lambda f: f.vae.elbo(X, n_samples=0), ValueError, "n_samples"),
    Case("elbo x a list", lambda f: f.vae.elbo(X.tolist()), TypeError, "x"),
    Case("log_px_given_z z 2-D", lambda f: f.vae.log_px_given_z(X, np.zeros((5, 2))), ValueError, "z"),
    # ------------------------------------------------------------------ Trainer and fit (train.py)
    Case("Trainer batch_size 0", lambda f: Trainer(f.vae, batch_size=0), ValueError, "batch_size"),
    Case("Trainer unknown optimizer", lambda f: Trainer(f.vae, "rmsprop"), ValueError, "optimizer"),
    Case("Trainer lr negative", lambda f: Trainer(f.vae, lr=-1.0), ValueError, "lr"),
    Case("Trainer lr NaN", lambda f: Trainer(f.vae, lr=float("nan")), ValueError, "lr"),
    Case("Trainer warmup negative", lambda f: Trainer(f.vae, warmup_epochs=-1), ValueError, "warmup_epochs"),
    Case("Trainer sgd momentum 2", lambda f: Trainer(f.vae, "sgd", momentum=2.0), ValueError, "momentum"),
    Case("fit epochs 0", lambda f: fit(f.vae, X, epochs=0, batch_size=2, progress=False), ValueError, "epochs"),
    Case("fit batch larger than the data", lambda f: fit(f.vae, X, batch_size=6, progress=False), ValueError,
         "batch_size"),
    Case("fit x a list", lambda f: fit(f.vae, X.tolist(), batch_size=2, progress=False), TypeError, "x"),
    Case("fit x_val wrong features", lambda f: fit(f.vae, X, batch_size=2, x_val=np.ones((2, 5)), progress=False),
         ValueError, "x_val"),
    Case("fit CVAE c missing", lambda f: fit(f.cvae, X, batch_size=2, progress=False), ValueError, "c"),
    Case("fit CVAE c_val missing", lambda f: fit(f.cvae, X, C, batch_size=2, x_val=X, progress=False),
         ValueError, "c_val"),
    Case("Trainer.fit log_every 0", lambda f: Trainer(f.vae, batch_size=2).fit(X, log_every=0, progress=False),
         ValueError, "log_every"),
    # ------------------------------------------------------------------ data loaders
    Case("ring n=0", lambda f: data.ring(0, rng=0), ValueError, "n"),
    Case("ring noise negative", lambda f: data.ring(3, -0.1, rng=0), ValueError, "noise"),
    Case("ring rng None", lambda f: data.ring(3, rng=None), TypeError, "rng"),
    Case("one_hot float labels", lambda f: data.one_hot(np.array([0.0, 1.0]), 2), TypeError, "labels"),
    Case("one_hot label out of range", lambda f: data.one_hot(np.array([0, 5]), 2), ValueError, "labels"),
    Case("one_hot n_classes 0", lambda f: data.one_hot(np.array([0]), 0), ValueError, "n_classes"),
    Case("split empty x", lambda f: data.train_val_test_split(np.ones((0, 2)), rng=0), ValueError, "x"),
    Case("split labels misaligned", lambda f: data.train_val_test_split(np.ones((4, 2)), np.arange(3), rng=0),
         ValueError, "labels"),
    Case("split val_fraction above 1", lambda f: data.train_val_test_split(np.ones((4, 2)), val_fraction=1.5,
                                                                            rng=0), ValueError, "val_fraction"),
    Case("binarize threshold 2", lambda f: data.binarize(X, 2.0), ValueError, "threshold"),
    Case("read_idx path an int", lambda f: data.read_idx(3), TypeError, "path"),
    Case("read_idx bad magic", lambda f: data.read_idx(f.bad_magic), ValueError, "bad_magic.idx"),
    Case("read_idx truncated data", lambda f: data.read_idx(f.short_data), ValueError, "short_data.idx"),
    Case("read_idx truncated header", lambda f: data.read_idx(f.short_header), ValueError, "short_header.idx"),
    Case("read_idx trailing bytes", lambda f: data.read_idx(f.trailing), ValueError, "trailing.idx"),
    Case("read_idx corrupt gzip", lambda f: data.read_idx(f.bad_gzip), ValueError, "bad.gz"),
    Case("download checksum mismatch", lambda f: data.download_file("t10k-labels-idx1-ubyte.gz", f.tmp / "dl",
                                                                    mirrors=["file:///mirror"], fetch=junk_fetch),
         ValueError, "t10k-labels-idx1-ubyte.gz"),
    Case("download mirrors one string", lambda f: data.download_file("t10k-labels-idx1-ubyte.gz", f.tmp / "dl",
                                                                     mirrors="file:///mirror", fetch=junk_fetch),
         TypeError, "mirrors"),
    Case("load_mnist unknown split", lambda f: data.load_mnist(f.tmp, "valid"), ValueError, "split"),
    Case("load_mnist download not a bool", lambda f: data.load_mnist(f.tmp, download="yes"), TypeError, "download"),
    # ------------------------------------------------------------------ checkpoints
    Case("load_checkpoint path None", lambda f: load_checkpoint(None), TypeError, "path"),
    Case("load_model path an int", lambda f: load_model(3), TypeError, "path"),
    Case("load_trainer path None", lambda f: load_trainer(None), TypeError, "path"),
    Case("load_model truncated file", lambda f: load_model(f.truncated_file), CheckpointError, "truncated.npz"),
    Case("load_trainer pickled file", lambda f: load_trainer(f.pickled_file), CheckpointError, "pickle"),
    Case("load_trainer of a model file", lambda f: load_trainer(f.model_file), CheckpointError, "training"),
    Case("save_model not a model", lambda f: save_model(f.tmp / "m.npz", "model"), TypeError, "model"),
    Case("save_trainer given a model", lambda f: save_trainer(f.tmp / "t.npz", f.vae), TypeError, "trainer"),
    Case("save_model missing directory", lambda f: save_model(f.missing_dir / "m.npz", f.vae), FileNotFoundError,
         "no_such_dir"),
    # ------------------------------------------------------------------ pictures
    Case("write_png missing directory", lambda f: write_png(f.missing_dir / "a.png", np.zeros((2, 2))),
         FileNotFoundError, "path"),
    Case("image_grid wrong image_shape", lambda f: image_grid(np.zeros((2, 64)), (7, 7), 2), ValueError,
         "image_shape"),
    # ------------------------------------------------------------------ the command line: flags argparse refuses
    Case("cli train --epochs 0", cli("train", "--epochs", "0"), UsageError, "--epochs"),
    Case("cli train --batch-size 0", cli("train", "--batch-size", "0"), UsageError, "--batch-size"),
    Case("cli train --latent 0", cli("train", "--latent", "0"), UsageError, "--latent"),
    Case("cli train --lr -1", cli("train", "--lr", "-1"), UsageError, "--lr"),
    Case("cli train --lr nan", cli("train", "--lr", "nan"), UsageError, "--lr"),
    Case("cli train --k 0", cli("train", "--k", "0"), UsageError, "--k"),
    Case("cli train --samples 0", cli("train", "--samples", "0"), UsageError, "--samples"),
    Case("cli train --warmup -1", cli("train", "--warmup", "-1"), UsageError, "--warmup"),
    Case("cli train --hidden 0", cli("train", "--hidden", "64,0"), UsageError, "--hidden"),
    Case("cli train --hidden 1.5", cli("train", "--hidden", "1.5"), UsageError, "--hidden"),
    Case("cli train --activation swish", cli("train", "--activation", "swish"), UsageError, "--activation"),
    Case("cli train --likelihood poisson", cli("train", "--likelihood", "poisson"), UsageError, "--likelihood"),
    Case("cli train --optimizer rmsprop", cli("train", "--optimizer", "rmsprop"), UsageError, "--optimizer"),
    Case("cli sample --n 0", cli("sample", "--checkpoint", "{model_file}", "--n", "0"), UsageError, "--n"),
    Case("cli sample --seed -1", cli("sample", "--checkpoint", "{model_file}", "--seed", "-1"), UsageError,
         "--seed"),
    Case("cli sample without --checkpoint", cli("sample"), UsageError, "--checkpoint"),
    Case("cli score --k 0", cli("score", "--checkpoint", "{model_file}", "--k", "0"), UsageError, "--k"),
    Case("cli gradcheck --samples 0", cli("gradcheck", "--samples", "0"), UsageError, "--samples"),
    Case("cli gradcheck --batch 0", cli("gradcheck", "--batch", "0"), UsageError, "--batch"),
    Case("cli gradcheck --beta -1", cli("gradcheck", "--beta", "-1"), UsageError, "--beta"),
    # ------------------------------------------------------------------ the command line: errors found while running
    Case("cli train ring --conditional", cli("train", "--dataset", "ring", "--conditional", "--out", "{tmp}/r"),
         CommandFailed, "--conditional"),
    Case("cli train --batch-size above the data", cli("train", "--dataset", "ring", "--batch-size", "100000",
                                                      "--out", "{tmp}/r"), CommandFailed, "--batch-size"),
    Case("cli train ring with bernoulli", cli("train", "--dataset", "ring", "--likelihood", "bernoulli",
                                              "--out", "{tmp}/r"), CommandFailed, "--likelihood"),
    Case("cli train --out is a file", cli("train", "--dataset", "ring", "--out", "{model_file}/run"),
         CommandFailed, "--out"),
    Case("cli sample missing checkpoint", cli("sample", "--checkpoint", "{tmp}/missing.npz"), CommandFailed,
         "--checkpoint"),
    Case("cli sample truncated checkpoint", cli("sample", "--checkpoint", "{truncated_file}"), CommandFailed,
         "--checkpoint"),
    Case("cli sample pickled checkpoint", cli("sample", "--checkpoint", "{pickled_file}"), CommandFailed,
         "--checkpoint"),
    Case("cli sample --label beyond the classes", cli("sample", "--checkpoint", "{cvae_file}", "--label", "10",
                                                      "--out", "{tmp}/s.npy"), CommandFailed, "--label"),
    Case("cli sample --label for a plain VAE", cli("sample", "--checkpoint", "{model_file}", "--label", "1",
                                                   "--out", "{tmp}/s.npy"), CommandFailed, "--label"),
    Case("cli sample --out unknown suffix", cli("sample", "--checkpoint", "{model_file}", "--out", "{tmp}/s.txt"),
         CommandFailed, "--out"),
    Case("cli sample --out missing directory", cli("sample", "--checkpoint", "{model_file}", "--out",
                                                   "{missing_dir}/s.png"), CommandFailed, "--out"),
    Case("cli sample PNG of non-square data", cli("sample", "--checkpoint", "{ring_file}", "--out", "{tmp}/s.png"),
         CommandFailed, "--out"),
    Case("cli score --input 3-D", cli("score", "--checkpoint", "{model_file}", "--input", "{x3d_file}"),
         CommandFailed, "--input"),
    Case("cli score --input integers", cli("score", "--checkpoint", "{model_file}", "--input", "{int_file}"),
         CommandFailed, "--input"),
    Case("cli score --input wrong features", cli("score", "--checkpoint", "{model_file}", "--input",
                                                 "{wrong_d_file}"), CommandFailed, "--input"),
    Case("cli score --input not a .npy", cli("score", "--checkpoint", "{model_file}", "--input", "{not_npy_file}"),
         CommandFailed, "--input"),
    Case("cli score --input missing", cli("score", "--checkpoint", "{model_file}", "--input", "{tmp}/none.npy"),
         CommandFailed, "--input"),
    Case("cli score --input for a CVAE", cli("score", "--checkpoint", "{cvae_file}", "--input", "{wrong_d_file}"),
         CommandFailed, "--input"),
    Case("cli score --dataset of other width", cli("score", "--checkpoint", "{model_file}", "--dataset", "ring",
                                                   "--k", "2"), CommandFailed, "--dataset"),
]


#: Training entry points (minivae/train.py).
TRAIN_CASES = [
    Case("Trainer model a string", lambda f: Trainer("model"), TypeError, "model"),
    Case("fit c_val given to a plain VAE", lambda f: fit(f.vae, X, batch_size=5, x_val=X, c_val=C, progress=False),
          ValueError, "c_val"),
    Case("fit checkpoint an int", lambda f: fit(f.vae, X, batch_size=5, checkpoint=3, progress=False), TypeError,
          "checkpoint"),
    Case("Trainer.evaluate batch_size 0", lambda f: Trainer(f.vae, batch_size=2).evaluate(X, batch_size=0),
          ValueError, "batch_size"),
    Case("Trainer.evaluate x a list", lambda f: Trainer(f.vae, batch_size=2).evaluate(X.tolist()), TypeError,
          "x"),
    Case("fit checkpoint empty", lambda f: fit(f.vae, X, batch_size=5, checkpoint="", progress=False), ValueError,
         "checkpoint"),
    Case("fit checkpoint a directory", lambda f: fit(f.vae, X, batch_size=5, checkpoint=str(f.tmp), progress=False),
         IsADirectoryError, "checkpoint"),
    Case("fit checkpoint in a missing folder", lambda f: fit(f.vae, X, batch_size=5, progress=False,
                                                             checkpoint=str(f.missing_dir / "c.npz")),
         FileNotFoundError, "checkpoint"),
    Case("fit keyword typo", lambda f: fit(f.vae, X, batch_size=5, epoch=2, progress=False), TypeError, "fit"),
    Case("Trainer option of another optimizer", lambda f: Trainer(f.vae, "adam", momentum=0.9), TypeError,
         "Trainer"),
    Case("x overflowing float32", lambda f: f.vae.loss(np.full((2, 4), 1e300)), ValueError, "x"),
    Case("save_model empty path", lambda f: save_model("", f.vae), ValueError, "path"),
    Case("save_model a directory", lambda f: save_model(f.tmp, f.vae), IsADirectoryError, "path"),
    Case("load_model a directory", lambda f: load_model(f.tmp), IsADirectoryError, "path"),
    Case("load_model empty path", lambda f: load_model(""), ValueError, "path"),
    Case("load_mnist cache_dir a file", lambda f: data.load_mnist(f.model_file, download=False),
         NotADirectoryError, "cache_dir"),
    Case("cli score --input with --dataset", cli("score", "--checkpoint", "{model_file}", "--input", "{wrong_d_file}",
                                                 "--dataset", "digits"), CommandFailed, "--dataset"),
    Case("cli score --input with --split", cli("score", "--checkpoint", "{model_file}", "--input", "{wrong_d_file}",
                                               "--split", "val"), CommandFailed, "--split"),
    Case("cli train --data-dir without mnist", cli("train", "--dataset", "ring", "--data-dir", "{tmp}",
                                                   "--out", "{tmp}/r"), CommandFailed, "--data-dir"),
    Case("cli train --resume without a run", cli("train", "--dataset", "ring", "--resume", "--out", "{tmp}/new"),
         CommandFailed, "--resume"),
    Case("cli train --resume and --overwrite", cli("train", "--dataset", "ring", "--resume", "--overwrite",
                                                   "--out", "{tmp}/new2"), CommandFailed, "--overwrite"),
    Case("cli sample --n beyond memory", cli("sample", "--checkpoint", "{model_file}", "--n", "10000000000000",
                                             "--out", "{tmp}/s.npy"), CommandFailed, "--n"),
    Case("cli train --hidden beyond memory", cli("train", "--dataset", "ring", "--hidden", "10000000000",
                                                 "--out", "{tmp}/r"), CommandFailed, "--hidden"),
]

PARAMS = [pytest.param(case, id=case.id) for case in CASES + TRAIN_CASES]


def test_the_catalogue_is_large_and_its_ids_unique():
    assert len(CASES) >= 60
    ids = [param.id for param in PARAMS]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", PARAMS)
def test_bad_input_gets_a_clear_error(case, f):
    with pytest.raises(case.error) as info:
        case.call(f)
    message = str(info.value)
    assert case.name in message, message
    if case.error not in (UsageError, CommandFailed, CheckpointError):  # a library message: the one form
        assert "expected" in message and "got" in message, message
    if case.error is UsageError and "choose from" not in message and "required" not in message:
        assert f"argument {case.name}: expected" in message, message  # our argparse types, same form


@pytest.mark.parametrize("variance", [1e-10, 1e10])
def test_a_fixed_variance_the_clamp_would_change_is_refused(variance):
    with pytest.raises(ValueError, match="fixed_variance:"):
        VAE(3, 2, likelihood="gaussian_fixed", fixed_variance=variance)
