"""Checkpoints at the level of models and training runs: atomic saves, loads that never run code, determinism.

``tests/test_checkpoint.py`` covers the file format itself (``save_checkpoint`` / ``load_checkpoint``); here the
same guarantees are checked through what a user calls: ``save_model`` / ``load_model``, ``save_trainer`` /
``load_trainer`` and ``Trainer.fit(..., checkpoint=path)``.
"""

import json
import math
import os

import numpy as np
import pytest

from minivae import checkpoint, data
from minivae.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from minivae.model import CVAE, VAE
from minivae.serialize import load_model, load_trainer, save_model, save_trainer
from minivae.train import NonFiniteError, Trainer, fit

X = data.ring(120, rng=0)  # (120, 2)


def make_trainer(seed=0, **kwargs):
    model = VAE(2, 2, (8,), likelihood="gaussian_per_dim", seed=seed)
    return Trainer(model, kwargs.pop("optimizer", "adam"), lr=kwargs.pop("lr", 1e-2), batch_size=30, seed=seed,
                   **kwargs)


@pytest.fixture
def trained(tmp_path):
    """A training checkpoint after one epoch, and the trainer that wrote it (one more epoch in memory)."""
    trainer = make_trainer()
    path = tmp_path / "run.npz"
    trainer.fit(X, epochs=1, progress=False, checkpoint=str(path))
    trainer.fit(X, epochs=1, progress=False)  # the state in memory has moved on; the file has not
    return path, trainer


def state_of(trainer):
    return trainer.model.params.data.copy(), trainer.optimizer.m.copy(), trainer.epoch, trainer.step_count


# --------------------------------------------------------------------------- saving is atomic


def fail_midway(monkeypatch, error):
    """Make the next save raise ``error`` after its first array is in the temporary file and half the next one."""
    real = np.lib.format.write_array
    calls = []

    def flaky(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            fp.write(b"\x93NUMPY half an array")
            raise error
        return real(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", flaky)


def boom(*args, **kwargs):
    raise OSError("disk full")


@pytest.mark.parametrize("save", ["save_model", "save_trainer"])
@pytest.mark.parametrize("where", ["write", "interrupt", "fsync", "replace"])
def test_a_failed_save_leaves_the_previous_checkpoint_intact_and_loadable(trained, monkeypatch, save, where):
    path, trainer = trained
    before = path.read_bytes()
    old_params = load_trainer(path).model.params.data.copy()
    assert not np.array_equal(old_params, trainer.model.params.data)  # the save would change the file

    error = KeyboardInterrupt("disk full") if where == "interrupt" else OSError("disk full")
    if where in ("write", "interrupt"):
        fail_midway(monkeypatch, error)
    else:
        monkeypatch.setattr(checkpoint.os, where, boom)
    with pytest.raises(type(error), match="disk full"):
        if save == "save_model":
            save_model(path, trainer.model)
        else:
            save_trainer(path, trainer)
    monkeypatch.undo()

    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind
    assert path.read_bytes() == before
    np.testing.assert_array_equal(load_model(path).params.data, old_params)
    resumed = load_trainer(path)
    np.testing.assert_array_equal(resumed.model.params.data, old_params)
    assert resumed.epoch == 1


def test_a_save_failing_inside_fit_keeps_the_last_epoch(tmp_path, monkeypatch):
    trainer = make_trainer()
    path = tmp_path / "run.npz"
    trainer.fit(X, epochs=2, progress=False, checkpoint=str(path))
    saved = state_of(trainer)
    fail_midway(monkeypatch, OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        trainer.fit(X, epochs=1, progress=False, checkpoint=str(path))  # the third epoch's save fails
    monkeypatch.undo()
    resumed = load_trainer(path)
    for a, b in zip(state_of(resumed), saved):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path) == [path.name]


# --------------------------------------------------------------------------- loading never runs code


class Exploit:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def members_of(path):
    with np.load(path) as npz:
        return {name: npz[name] for name in npz.files}


def write_members(path, members):
    """Write an .npz by hand, as an attacker or a bad disk might (numpy.savez pickles object arrays)."""
    with open(path, "wb") as fh:
        np.savez(fh, **members)


def header_of(members):
    return json.loads(members["__meta__"].tobytes())


def with_header(members, header):
    return {**members, "__meta__": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}


def pickle_in(name):
    def tamper(path, marker):
        members = members_of(path)
        header = header_of(members)
        members[name] = np.array([Exploit(marker)], dtype=object)
        header["manifest"][name] = {"shape": [1], "dtype": "object"}
        write_members(path, with_header(members, header))
    return tamper


def pickled_header(path, marker):
    members = members_of(path)
    members["__meta__"] = np.array([Exploit(marker)], dtype=object)
    write_members(path, members)


def newer_version(path, marker):
    members = members_of(path)
    header = header_of(members)
    header["version"] = FORMAT_VERSION + 1
    write_members(path, with_header(members, header))


def shape_behind_the_manifest(path, marker):
    members = members_of(path)
    members["params"] = members["params"][:-1]  # the manifest still says the old shape
    write_members(path, members)


def shape_with_a_matching_manifest(path, marker):
    arrays, meta = load_checkpoint(path)
    arrays["params"] = np.concatenate([arrays["params"], arrays["params"][:3]])
    save_checkpoint(path, arrays, meta)  # a consistent file, but not for this configuration


def array_behind_the_manifest(path, marker):
    members = members_of(path)
    del members["params"]
    write_members(path, members)


def array_with_a_matching_manifest(path, marker):
    arrays, meta = load_checkpoint(path)
    del arrays["params"]
    save_checkpoint(path, arrays, meta)


def truncated(fraction):
    def tamper(path, marker):
        raw = path.read_bytes()
        path.write_bytes(raw[:int(len(raw) * fraction)])
    return tamper


TAMPERS = {
    "pickle in params": (pickle_in("params"), "pickle"),
    "pickle in the optimizer state": (pickle_in("optimizer.m"), "pickle"),
    "pickle as the header": (pickled_header, "pickle"),
    "newer format version": (newer_version, "newer"),
    "shape behind the manifest's back": (shape_behind_the_manifest, "params"),
    "shape with a matching manifest": (shape_with_a_matching_manifest, "params"),
    "array missing behind the manifest's back": (array_behind_the_manifest, "missing"),
    "array missing with a matching manifest": (array_with_a_matching_manifest, "params"),
    "truncated to 10%": (truncated(0.1), "truncated or corrupt"),
    "truncated to 60%": (truncated(0.6), "truncated or corrupt"),
    "truncated to 99%": (truncated(0.99), "truncated or corrupt"),
}


@pytest.mark.parametrize("load", [load_model, load_trainer], ids=["load_model", "load_trainer"])
@pytest.mark.parametrize("tamper", TAMPERS, ids=list(TAMPERS))
def test_a_bad_file_gives_a_clear_checkpoint_error_and_runs_nothing(trained, tmp_path, load, tamper):
    path, _ = trained
    marker = tmp_path / "code_ran"
    change, fragment = TAMPERS[tamper]
    change(path, marker)
    assert not marker.exists()  # writing the payload did not run it
    with pytest.raises(CheckpointError, match=fragment) as info:
        load(path)
    assert str(path) in str(info.value)  # the message names the file
    assert not marker.exists()  # and loading did not run it either


@pytest.mark.parametrize("key, value, fragment", [
    ("optimizer.m", lambda m: m[:1], "optimizer.m"),  # would broadcast silently into the moment buffer
    ("optimizer.v", lambda v: v.astype(np.float64), "optimizer.v"),
    ("optimizer.m", None, "optimizer.m"),  # missing, with a matching manifest
])
def test_a_bad_optimizer_state_is_refused_by_load_trainer(trained, key, value, fragment):
    path, _ = trained
    arrays, meta = load_checkpoint(path)
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value(arrays[key])
    save_checkpoint(path, arrays, meta)
    with pytest.raises(CheckpointError, match=fragment):
        load_trainer(path)
    load_model(path)  # the model itself is still readable


@pytest.mark.parametrize("field, value", [("epoch", -1), ("step_count", "7"), ("batch_size", 0)])
def test_a_bad_training_counter_is_refused(trained, field, value):
    path, _ = trained
    arrays, meta = load_checkpoint(path)
    meta["trainer"][field] = value
    save_checkpoint(path, arrays, meta)
    with pytest.raises(CheckpointError, match=field):
        load_trainer(path)


# --------------------------------------------------------------------------- determinism


def make_models(seed):
    return [VAE(5, 3, (7, 4), likelihood="gaussian_per_example", n_samples=2, seed=seed),
            CVAE(5, 2, latent_dim=3, hidden=(6,), likelihood="bernoulli", seed=seed)]


def outputs(model, rng_x):
    """Everything a model computes that depends on its seed, drawn from its own generator, as bytes."""
    x = rng_x.random((6, 5))
    c = np.eye(2)[[0, 1, 0, 1, 0, 1]] if model.conditional else None
    results = [model.params.data.tobytes()]
    for _ in range(2):  # twice: the generator moves on, and does so the same way
        loss, grads = model.loss_and_grads(x, c)
        results += [np.asarray(loss).tobytes(), model.params.grad.tobytes()]
    results.append(model.sample(4, None if c is None else c[:4]).tobytes())
    results.append(model.log_likelihood(x, k=7, c=c, batch_size=4).tobytes())
    results.append(model.elbo(x, c).tobytes())
    return results


def test_the_same_seed_gives_bit_identical_results():
    for first, second, other in zip(make_models(3), make_models(3), make_models(4)):
        a = outputs(first, np.random.default_rng(0))
        b = outputs(second, np.random.default_rng(0))
        assert a == b
        assert outputs(other, np.random.default_rng(0))[0] != a[0]  # the seed does matter
        assert a[1] != a[3]  # the model's own generator gave new noise to the second call


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_short_fit_is_bit_identical_for_the_same_seed(optimizer):
    runs = []
    for _ in range(2):
        model = CVAE(2, 2, latent_dim=2, hidden=(8,), likelihood="gaussian_shared", seed=1)
        c = np.eye(2)[np.arange(X.shape[0]) % 2]
        history = fit(model, X, c, epochs=2, batch_size=32, optimizer=optimizer, lr=1e-2, warmup_epochs=1, seed=2,
                      x_val=X[:20], c_val=c[:20], progress=False)
        runs.append((model.params.data.tobytes(), history.to_dict(), model.rng.bit_generator.state))
    assert runs[0] == runs[1]


# --------------------------------------------------------------------------- divergence during fit


def test_divergence_during_fit_leaves_the_last_completed_epoch_on_disk(tmp_path, monkeypatch):
    trainer = make_trainer(optimizer="sgd", lr=1e-2, momentum=0.5)
    path = tmp_path / "run.npz"
    steps_per_epoch = math.ceil(X.shape[0] / trainer.batch_size)
    real_step, at_epoch_end = trainer.optimizer.step, {}

    def step():
        # From the third epoch on, a learning rate that diverges at once: the loss or the gradient overflows.
        if trainer.optimizer.t == 2 * steps_per_epoch:
            at_epoch_end.update(params=trainer.model.params.data.copy(), velocity=trainer.optimizer.velocity.copy())
            trainer.optimizer.lr = 1e12
        real_step()

    monkeypatch.setattr(trainer.optimizer, "step", step)
    with np.errstate(all="ignore"), pytest.raises(NonFiniteError, match=r"step \d+") as info:
        trainer.fit(X, epochs=10, progress=False, checkpoint=str(path))
    failed_at = int(str(info.value).split("step ")[1].split()[0])
    assert failed_at > 2 * steps_per_epoch and trainer.epoch == 2

    assert os.listdir(tmp_path) == [path.name]
    model = load_model(path)
    resumed = load_trainer(path)
    for loaded in (model, resumed.model):
        np.testing.assert_array_equal(loaded.params.data, at_epoch_end["params"])
        assert np.all(np.isfinite(loaded.params.data))
    np.testing.assert_array_equal(resumed.optimizer.velocity, at_epoch_end["velocity"])
    assert resumed.epoch == 2 and resumed.step_count == 2 * steps_per_epoch
    assert resumed.optimizer.lr == 1e-2  # the learning rate of the good epochs
    assert len(resumed.history.train_loss) == 2
    resumed.fit(X, epochs=1, progress=False)  # and training goes on from there
    assert np.all(np.isfinite(resumed.model.params.data))
