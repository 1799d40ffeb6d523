"""Saving and loading models and training runs."""

import numpy as np
import pytest

from minivae import data
from minivae.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minivae.model import CVAE, VAE
from minivae.serialize import load_model, load_trainer, save_model, save_trainer
from minivae.train import Trainer


@pytest.mark.parametrize("make", [
    lambda: VAE(5, 2, (6, 4), likelihood="gaussian_per_dim", activation="tanh", dtype="float64", seed=1),
    lambda: VAE(5, 3, (), likelihood="gaussian_per_example", n_samples=3, seed=2),
    lambda: CVAE(5, 3, latent_dim=2, hidden=(7,), likelihood="bernoulli", seed=3),
])
def test_save_then_load_gives_identical_outputs(tmp_path, make):
    model = make()
    rng = np.random.default_rng(0)
    model.params.data[:] = rng.normal(size=model.params.size)
    x = rng.random((4, 5))
    c = np.eye(3)[[0, 1, 2, 0]] if model.conditional else None
    noise = rng.standard_normal((model.config.n_samples, 4, model.config.latent_dim))
    save_model(tmp_path / "m.npz", model)
    loaded = load_model(tmp_path / "m.npz")
    assert type(loaded) is type(model) and loaded.config == model.config and loaded.dtype == model.dtype
    np.testing.assert_array_equal(loaded.params.data, model.params.data)
    for a, b in zip(model.encode(x, c), loaded.encode(x, c)):
        np.testing.assert_array_equal(a, b)
    assert float(model.loss(x, c, noise=noise).total) == float(loaded.loss(x, c, noise=noise).total)
    # the model's own generator state travels too: the next samples agree
    np.testing.assert_array_equal(model.sample(3, None if c is None else c[:3]),
                                  loaded.sample(3, None if c is None else c[:3]))


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    x = data.ring(120, rng=0)

    def trainer():
        return Trainer(VAE(2, 2, (8,), likelihood="gaussian_shared", seed=4), "adam", lr=1e-2, batch_size=16,
                       warmup_epochs=2, seed=9)

    straight = trainer()
    straight.fit(x, epochs=5, x_val=x[:20], progress=False)
    first = trainer()
    first.fit(x, epochs=2, x_val=x[:20], progress=False)
    save_trainer(tmp_path / "run.npz", first)
    resumed = load_trainer(tmp_path / "run.npz")
    resumed.fit(x, epochs=3, x_val=x[:20], progress=False)
    np.testing.assert_array_equal(resumed.model.params.data, straight.model.params.data)
    np.testing.assert_array_equal(resumed.optimizer.m, straight.optimizer.m)
    assert resumed.history == straight.history and resumed.step_count == straight.step_count


def test_sgd_training_state_round_trips(tmp_path):
    t = Trainer(VAE(2, 2, (4,), likelihood="gaussian_shared"), "sgd", lr=1e-3, momentum=0.5, batch_size=8)
    t.fit(data.ring(40, rng=0), epochs=1, progress=False)
    save_trainer(tmp_path / "s.npz", t)
    back = load_trainer(tmp_path / "s.npz")
    assert back.optimizer.name == "sgd" and back.optimizer.momentum == 0.5
    np.testing.assert_array_equal(back.optimizer.velocity, t.optimizer.velocity)


def test_checkpoint_written_each_epoch_survives_a_failed_epoch(tmp_path):
    x = data.ring(100, rng=0)
    trainer = Trainer(VAE(2, 2, (8,), likelihood="gaussian_shared"), batch_size=20)
    path = tmp_path / "ckpt.npz"
    trainer.fit(x, epochs=2, progress=False, checkpoint=str(path))
    saved = load_trainer(path).model.params.data.copy()
    with pytest.raises(ValueError, match="x:"):
        trainer.fit(np.full((100, 2), np.nan), epochs=1, progress=False, checkpoint=str(path))
    np.testing.assert_array_equal(load_trainer(path).model.params.data, saved)


def test_tampered_parameters_and_config_are_refused(tmp_path):
    model = VAE(4, 2, (3,))
    save_model(tmp_path / "m.npz", model)
    arrays, meta = load_checkpoint(tmp_path / "m.npz")
    save_checkpoint(tmp_path / "short.npz", {"params": arrays["params"][:-1]}, meta)
    with pytest.raises(CheckpointError, match="params"):
        load_model(tmp_path / "short.npz")
    meta["model"]["config"]["activation"] = "swish"
    save_checkpoint(tmp_path / "bad.npz", arrays, meta)
    with pytest.raises(CheckpointError, match="activation"):
        load_model(tmp_path / "bad.npz")
    with pytest.raises(CheckpointError, match="training"):
        load_trainer(tmp_path / "m.npz")
