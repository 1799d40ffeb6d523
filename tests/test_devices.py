"""One code path on NumPy and CuPy: the device option, and the same results on either device.

The tests in the first part run everywhere. Those marked ``gpu`` need CuPy
and a CUDA GPU and are skipped, with the reason shown, on any other machine
(``pytest -rs`` lists them). Noise is always drawn on the host and passed in,
since NumPy and CuPy generators seeded alike give different streams.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minivae import Trainer, VAE, backend
from minivae.cli import main
from minivae.fast import FastStep
from minivae.layers import ACTIVATIONS
from minivae.likelihoods import LIKELIHOODS
from minivae.gradcheck import model_gradient_errors, relative_error
from minivae.serialize import load_model, load_trainer, save_model, save_trainer

from conftest import GRAD_TOL

CUDA_OK, CUDA_WHY = backend.cuda_status()
gpu = pytest.mark.skipif(not CUDA_OK, reason=f"needs a CUDA GPU: {CUDA_WHY}")
no_gpu = pytest.mark.skipif(CUDA_OK, reason="checks the error raised on a machine without a usable GPU")


def small_model(device="cpu", dtype="float64", **kwargs):
    options = dict(hidden=(5,), likelihood="bernoulli", seed=3)
    options.update(kwargs)
    return VAE(6, 2, dtype=dtype, device=device, **options)


# --------------------------------------------------------------------------- everywhere


def test_cpu_is_the_default_and_auto_picks_what_is_there():
    assert small_model().device == "cpu"
    assert isinstance(small_model().params.data, np.ndarray)
    assert small_model(device="auto").device == ("cuda" if CUDA_OK else "cpu")


@pytest.mark.parametrize("bad", ["gpu", "GPU", None, 1])
def test_an_unknown_device_is_named(bad):
    with pytest.raises(ValueError, match=r"^device: expected one of \('cpu', 'cuda', 'auto'\)"):
        small_model(device=bad)


@no_gpu
def test_asking_for_cuda_without_a_gpu_says_which_part_is_missing(tmp_path):
    with pytest.raises(RuntimeError, match="device: 'cuda' was requested but (CuPy is not installed|CuPy is installed)"):
        small_model(device="cuda")
    save_model(tmp_path / "m.npz", small_model())
    with pytest.raises(RuntimeError, match="device: 'cuda' was requested"):
        load_model(tmp_path / "m.npz", device="cuda")


@no_gpu
def test_the_cli_names_the_device_flag(tmp_path, capsys):
    assert main(["gradcheck", "--device", "cuda"]) == 2
    assert "minivae gradcheck: error: --device: 'cuda' was requested but" in capsys.readouterr().err


def test_fused_kernels_need_the_gpu():
    with pytest.raises(ValueError, match=r"^kernels: 'fused' runs CUDA kernels and needs device='cuda', got"):
        Trainer(small_model(dtype="float32"), kernels="fused")
    with pytest.raises(ValueError, match=r"^kernels: expected one of \('plain', 'fused'\), got 'fast'"):
        Trainer(small_model(dtype="float32"), kernels="fast")


def test_the_cli_refuses_fused_kernels_on_the_cpu(tmp_path, capsys):
    code = main(["train", "--dataset", "ring", "--kernels", "fused", "--out", str(tmp_path), "--no-progress"])
    assert code == 2
    assert "--kernels: 'fused' runs CUDA kernels and needs --device cuda" in capsys.readouterr().err


def test_every_command_takes_a_device_flag():
    from minivae.cli import build_parser

    parser = build_parser()
    for command in (["train"], ["sample", "--checkpoint", "m.npz"], ["score", "--checkpoint", "m.npz"],
                    ["gradcheck"]):
        assert parser.parse_args(command).device == "cpu"
        assert parser.parse_args([*command, "--device", "auto"]).device == "auto"


def test_a_generator_must_draw_on_the_models_device():
    model = small_model()
    assert backend.generator_device(np.random.default_rng(0)) == "cpu"
    assert backend.generator_device(np.random.RandomState(0)) is None
    model.loss(np.ones((2, 6)) * 0.5, rng=np.random.default_rng(0))  # the right kind is accepted
    with pytest.raises(TypeError, match="^rng: expected a random generator"):
        model.loss(np.ones((2, 6)) * 0.5, rng=np.random.RandomState(0))


def test_to_copies_the_parameters_into_a_new_buffer():
    model = small_model()
    model.params.data[:] = np.random.default_rng(0).normal(size=model.params.size)
    copy = model.to("cpu")
    np.testing.assert_array_equal(copy.params.data, model.params.data)
    copy.params.data[0] += 1.0
    assert copy.params.data[0] != model.params.data[0]
    assert copy.config == model.config and copy.dtype == model.dtype


def test_the_initial_weights_are_drawn_on_the_host():
    """So that a seed fixes the same starting point on any device (compared across devices below)."""
    a, b = small_model(seed=7), small_model(seed=7)
    np.testing.assert_array_equal(a.params.data, b.params.data)
    assert not np.array_equal(a.params.data, small_model(seed=8).params.data)


# --------------------------------------------------------------------------- on a GPU


def _host_inputs(seed, model, n=4):
    rng = np.random.default_rng(seed)
    x = rng.random((n, model.config.data_dim))
    c = np.eye(model.config.condition_dim)[rng.integers(0, model.config.condition_dim, n)] \
        if model.config.condition_dim else None
    noise = rng.standard_normal((model.config.n_samples, n, model.config.latent_dim))
    return x, c, noise


@gpu
@given(seed=st.integers(0, 2**31), likelihood=st.sampled_from(LIKELIHOODS),
       activation=st.sampled_from(sorted(ACTIVATIONS)), n_samples=st.integers(1, 3),
       condition_dim=st.sampled_from([0, 2]))
@settings(max_examples=10)  # each example runs ~100 loss evaluations on the GPU, each a few launches
def test_whole_model_gradients_on_cupy_in_float64(seed, likelihood, activation, n_samples, condition_dim):
    model = small_model("cuda", likelihood=likelihood, activation=activation, n_samples=n_samples,
                        condition_dim=condition_dim)
    model.params.data[:] = backend.to_device(np.random.default_rng(seed).normal(0, 0.5, model.params.size), "cuda")
    x, c, noise = _host_inputs(seed, model)
    errors = model_gradient_errors(model, x, c, noise=noise)
    assert max(errors.values()) <= GRAD_TOL, errors


@gpu
@given(seed=st.integers(0, 2**31), likelihood=st.sampled_from(LIKELIHOODS),
       activation=st.sampled_from(sorted(ACTIVATIONS)), condition_dim=st.sampled_from([0, 2]))
def test_the_same_model_on_either_device_gives_the_same_loss_and_gradients(seed, likelihood, activation,
                                                                            condition_dim):
    cpu = small_model(likelihood=likelihood, activation=activation, condition_dim=condition_dim, seed=seed % 1000)
    cuda = cpu.to("cuda")
    x, c, noise = _host_inputs(seed, cpu)
    loss_cpu, grads_cpu = cpu.loss_and_grads(x, c, noise=noise)
    loss_gpu, grads_gpu = cuda.loss_and_grads(x, c, noise=noise)
    assert backend.device_of(loss_gpu) == "cuda" and backend.device_of(cuda.params.grad) == "cuda"
    assert float(loss_gpu) == pytest.approx(float(loss_cpu), rel=1e-10)  # sums in another order: rounding only
    assert relative_error(cuda.params.grad, cpu.params.grad) <= 1e-10
    for a, b in zip(cuda.encode(x, c), cpu.encode(x, c)):
        assert relative_error(a, b) <= 1e-10
    assert relative_error(cuda.reconstruct(x, c), cpu.reconstruct(x, c)) <= 1e-10


@gpu
@pytest.mark.parametrize("kernels", ["plain", "fused"])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_the_training_step_on_cupy_matches_the_reference(kernels, likelihood):
    model = small_model("cuda", likelihood=likelihood, n_samples=2, condition_dim=2)
    x, c, _ = _host_inputs(0, model, n=5)
    step = FastStep(model, kernels)
    ws = step.workspace(5)
    ws.x[...] = backend.to_device(x, "cuda")
    ws.enc_in[:, 6:] = backend.to_device(c, "cuda")
    rng_a, rng_b = backend.default_rng(1, "cuda"), backend.default_rng(1, "cuda")
    loss = step(ws, rng_a, need_loss=True)
    fast_grad = model.params.grad.copy()
    ref_loss, _ = model.loss_and_grads(x, c, rng=rng_b)
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-10)
    assert relative_error(fast_grad, model.params.grad) <= 1e-10


@gpu
def test_training_on_cupy_plain_and_fused_agree_and_learn():
    x = (np.random.default_rng(0).random((256, 6)) < 0.3).astype(np.float64)
    runs = {}
    for kernels in ("plain", "fused"):
        model = small_model("cuda", seed=0)
        trainer = Trainer(model, lr=1e-2, batch_size=32, seed=0, kernels=kernels)
        history = trainer.fit(x, epochs=5, progress=False)
        runs[kernels] = (backend.to_numpy(model.params.data), history.train_loss)
    assert runs["plain"][1][-1] < runs["plain"][1][0]
    assert relative_error(runs["fused"][0], runs["plain"][0]) <= 1e-8


@gpu
def test_a_checkpoint_moves_between_devices(tmp_path):
    x = np.random.default_rng(0).random((64, 6))
    trainer = Trainer(small_model("cuda", dtype="float32"), batch_size=16, seed=0)
    trainer.fit(x, epochs=2, progress=False)
    save_trainer(tmp_path / "run.npz", trainer)
    on_cpu = load_trainer(tmp_path / "run.npz", device="cpu")
    np.testing.assert_array_equal(on_cpu.model.params.data, backend.to_numpy(trainer.model.params.data))
    np.testing.assert_array_equal(on_cpu.optimizer.m, backend.to_numpy(trainer.optimizer.m))
    on_cpu.fit(x, epochs=1, progress=False)  # and training goes on there
    save_model(tmp_path / "model.npz", on_cpu.model)
    back = load_model(tmp_path / "model.npz", device="cuda")
    np.testing.assert_array_equal(backend.to_numpy(back.params.data), on_cpu.model.params.data)


@gpu
def test_scoring_and_sampling_stay_on_the_device():
    model = small_model("cuda", likelihood="gaussian_per_dim")
    x = np.random.default_rng(0).random((7, 6))
    ll = model.log_likelihood(x, k=50)
    assert backend.device_of(ll) == "cuda" and ll.shape == (7,) and bool(np.isfinite(backend.to_numpy(ll)).all())
    assert backend.device_of(model.sample(3)) == "cuda"
    assert backend.device_of(model.sample(3, mean=False)) == "cuda"
    with pytest.raises(TypeError, match="rng: expected a generator that draws on the model's device 'cuda'"):
        model.sample(3, rng=np.random.default_rng(0))


@gpu
def test_the_cli_runs_on_the_gpu(tmp_path, capsys):
    assert main(["gradcheck", "--device", "cuda"]) == 0
    assert main(["train", "--dataset", "ring", "--epochs", "2", "--k", "10", "--hidden", "16", "--device", "cuda",
                 "--kernels", "fused", "--out", str(tmp_path), "--no-progress"]) == 0
    assert main(["score", "--checkpoint", str(tmp_path / "model.npz"), "--dataset", "ring", "--k", "10",
                 "--device", "cuda"]) == 0
