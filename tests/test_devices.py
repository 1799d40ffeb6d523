"""One code path on NumPy and CuPy: the device option, and the same results on either device.

The tests in the first part run everywhere. Those marked ``gpu`` need CuPy
and a CUDA GPU and are skipped, with the reason shown, on any other machine
(``pytest -rs`` lists them). Noise is always drawn on the host and passed in,
since NumPy and CuPy generators seeded alike give different streams.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minivae import Trainer, VAE, backend
from minivae.cli import main
from minivae.fast import FastStep
from minivae.fused import KERNELS, FusedOps
from minivae.layers import ACTIVATIONS
from minivae.likelihoods import LIKELIHOODS
from minivae.gradcheck import model_gradient_errors, relative_error
from minivae.serialize import load_model, load_trainer, save_model, save_trainer

from conftest import GRAD_TOL
from test_fused import HostLauncher, host_build  # noqa: F401  (a fixture: the kernels compiled by g++)

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
    from minivae.cli.parser import build_parser

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
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_reference_engine_trains_on_cupy_step_for_step_with_the_fast_one(optimizer):
    x = np.random.default_rng(0).random((40, 6))
    c = np.eye(2)[np.random.default_rng(1).integers(0, 2, 40)]
    params = {}
    for engine in ("fast", "reference"):
        model = small_model("cuda", seed=0, likelihood="gaussian_per_dim", condition_dim=2)
        trainer = Trainer(model, optimizer, lr=1e-2, batch_size=16, seed=0, warmup_epochs=1, engine=engine)
        trainer.fit(x, c, epochs=2, x_val=x[:8], c_val=c[:8], progress=False)
        assert backend.device_of(model.params.data) == "cuda"
        assert all(backend.device_of(value) == "cuda" for value in trainer.optimizer.state().values())
        params[engine] = backend.to_numpy(model.params.data)
    assert relative_error(params["reference"], params["fast"]) <= 1e-10


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


# --------------------------------------------------------------------------- the benchmark's step, launch by launch
#
# Run twice: on the CuPy stand-in (tests/fake_cupy) in this process, with the fused kernels compiled as C++ by g++,
# so the checks run on any machine; and on a GPU, with CuPy and the kernels compiled by NVRTC.

#: The benchmark's model (benchmarks/bench_cpu.py): 784-400-20, ReLU, Bernoulli decoder, S = 1, Adam, float32.
BENCH_D, BENCH_H, BENCH_K = 784, 400, 20
#: Launches of one training step of that model on the stand-in, per kind of kernels: (without the loss, the loss
#: step's extra launches). The same at every batch size (docs/kernels.md, "Launches per step").
LAUNCHES_PER_STEP = {"fused": (29, 17), "plain": (69, 33)}


def _load_stand_in():
    """The CuPy stand-in as a module of its own name, without putting it on the path as ``cupy``."""
    name = "minivae_test_fake_cupy"
    if name not in sys.modules:
        path = Path(__file__).parent / "fake_cupy" / "cupy" / "__init__.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its get_array_module finds itself there
        spec.loader.exec_module(module)
    return sys.modules[name]


class StandInLauncher(HostLauncher):
    """The kernels compiled as C++, launched on the stand-in's "device" arrays; every launch counted."""

    device = "cuda"

    def __init__(self, build, stand_in):
        super().__init__(build)
        self.stand_in = stand_in

    def __call__(self, file, name, dtype, n_threads, args):
        self.stand_in.LAUNCHES[name] += 1
        super().__call__(file, name, dtype, n_threads, args)


@pytest.fixture
def stand_in(monkeypatch):
    """minivae's backend on the CuPy stand-in, in this process: ``device="cuda"`` makes stand-in arrays."""
    fake = _load_stand_in()
    monkeypatch.setattr(backend, "_cupy", fake)
    fake.LAUNCHES.clear()
    return fake


def _bench_trainer(kernels, batch, device, fused_ops=None):
    """The benchmark's trainer with a batch in its workspace (data drawn on the host, as the benchmark's)."""
    model = VAE(BENCH_D, BENCH_K, (BENCH_H,), likelihood="bernoulli", dtype="float32", seed=0, device=device)
    trainer = Trainer(model, "adam", lr=1e-3, batch_size=batch, seed=0, kernels=kernels)
    if fused_ops is not None:  # the stand-in: the kernels through the host launcher
        trainer.engine_step.ops = trainer.optimizer.ops = fused_ops
    ws = trainer.engine_step.workspace(batch)
    x = (np.random.default_rng(batch).random((batch, BENCH_D)) < 0.3).astype(np.float32)
    ws.x[...] = backend.to_device(x, device)
    return trainer, ws


def _stand_in_trainer(kernels, batch, stand_in, build):
    ops = FusedOps(StandInLauncher(build, stand_in)) if kernels == "fused" else None
    return _bench_trainer(kernels, batch, "cuda", ops)


def _launches(stand_in, trainer, ws):
    """Launches of a step without the loss and of one with it, as in training: after other steps without it."""
    trainer.step(ws, 1.0, need_loss=True)  # first use: allocations, scratch buffers
    trainer.step(ws, 1.0, need_loss=False)
    counts = []
    for need_loss in (False, True):
        stand_in.LAUNCHES.clear()
        trainer.step(ws, 1.0, need_loss=need_loss)
        counts.append(sum(stand_in.LAUNCHES.values()))
    return tuple(counts)


@pytest.mark.parametrize("kernels", ["fused", "plain"])
def test_a_step_takes_a_fixed_number_of_launches_at_every_batch_size(stand_in, host_build, kernels):
    counts = {}
    for batch in (32, 128, 4096):
        counts[batch] = _launches(stand_in, *_stand_in_trainer(kernels, batch, stand_in, host_build))
    without, extra = LAUNCHES_PER_STEP[kernels]
    assert counts == {batch: (without, without + extra) for batch in counts}, (counts, stand_in.LAUNCHES)


def test_the_fused_step_launches_one_kernel_per_chain(stand_in, host_build):
    trainer, ws = _stand_in_trainer("fused", 128, stand_in, host_build)
    trainer.step(ws, 1.0, need_loss=False)
    stand_in.LAUNCHES.clear()
    trainer.step(ws, 1.0, need_loss=False)
    kernels = {name: n for name, n in stand_in.LAUNCHES.items() if name in {k for ks in KERNELS.values() for k in ks}}
    assert kernels == {"bias_act_forward": 4, "act_backward": 2, "head_forward": 1, "head_backward": 1,
                       "bernoulli_grad": 1, "adam": 1}, stand_in.LAUNCHES
    assert stand_in.LAUNCHES["matmul"] == 15  # 11 products and 4 bias gradients 1^T da


def test_a_scoring_pass_takes_few_chunks_on_the_gpu(stand_in):
    from minivae.backend import BLOCK_ELEMENTS

    model = VAE(BENCH_D, BENCH_K, (BENCH_H,), likelihood="bernoulli", dtype="float32", seed=0, device="cuda")
    x = (np.random.default_rng(0).random((256, BENCH_D)) < 0.3).astype(np.float32)
    stand_in.LAUNCHES.clear()
    model.log_likelihood(x, k=100)
    per_chunk = BLOCK_ELEMENTS["scoring"]["cuda"] // (256 * BENCH_D)  # samples a chunk holds: 83
    assert stand_in.LAUNCHES["standard_normal"] == 1  # the noise of both chunks in one draw
    assert stand_in.LAUNCHES["matmul"] == 2 + 2 * -(-100 // per_chunk) == 6  # the encoder's 2, the decoder's 2 a chunk
    assert BLOCK_ELEMENTS["scoring"]["cpu"] // (256 * BENCH_D) == 5  # the CPU's chunks: five samples each


def _float32_step_twins(trainer_of, steps=3):
    """The benchmark's step in float32, fused and plain, from the same start on the same noise: gradients,
    losses and parameters after ``steps`` steps (the last with the loss)."""
    runs = {}
    for kernels in ("plain", "fused"):
        trainer, ws = trainer_of(kernels)
        losses = []
        for i in range(steps):
            losses.append(trainer.step(ws, 1.0, need_loss=i == steps - 1))
        runs[kernels] = (backend.to_numpy(trainer.model.params.grad), float(losses[-1]),
                         backend.to_numpy(trainer.model.params.data))
    return runs


def _assert_float32_twins(runs):
    (g_plain, loss_plain, p_plain), (g_fused, loss_fused, p_fused) = runs["plain"], runs["fused"]
    # float32: each gradient element is a sum of up to 4096 products; 1e-4 of the largest gradient is ~1000 u
    np.testing.assert_allclose(g_fused, g_plain, rtol=0, atol=1e-4 * np.abs(g_plain).max())
    assert loss_fused == pytest.approx(loss_plain, rel=1e-5)
    # Adam's early steps move each parameter by about lr = 1e-3 whatever the gradient's size, so a gradient that
    # differs in its last bits moves its parameter by as much: compare the update to its own scale
    assert np.abs(p_fused - p_plain).max() <= 1e-4, np.abs(p_fused - p_plain).max()


def test_the_fused_float32_training_step_matches_the_plain_one_on_the_stand_in(stand_in, host_build):
    _assert_float32_twins(_float32_step_twins(lambda kernels: _stand_in_trainer(kernels, 256, stand_in, host_build)))


@pytest.mark.parametrize("kernels", ["fused", "plain"])
def test_a_step_without_the_loss_never_waits_for_the_device_on_the_stand_in(stand_in, host_build, kernels):
    trainer, ws = _stand_in_trainer(kernels, 64, stand_in, host_build)
    trainer.step(ws, 1.0, need_loss=True)  # first use
    with stand_in.allow_synchronize(False):
        for _ in range(3):
            trainer.step(ws, 1.0, need_loss=False)
        with pytest.raises(stand_in.DeviceSynchronized):  # the loss step reads the loss: the check can fail
            trainer.step(ws, 1.0, need_loss=True)


@gpu
def test_the_fused_float32_training_step_matches_the_plain_one():
    _assert_float32_twins(_float32_step_twins(lambda kernels: _bench_trainer(kernels, 4096, "cuda")))


@gpu
@pytest.mark.parametrize("kernels", ["fused", "plain"])
def test_a_step_without_the_loss_never_waits_for_the_device(kernels):
    import cupyx

    trainer, ws = _bench_trainer(kernels, 256, "cuda")
    trainer.step(ws, 1.0, need_loss=True)  # first use: kernels compiled, memory pools filled
    with cupyx.allow_synchronize(False):
        for _ in range(3):
            trainer.step(ws, 1.0, need_loss=False)
        with pytest.raises(cupyx.DeviceSynchronized):
            trainer.step(ws, 1.0, need_loss=True)
