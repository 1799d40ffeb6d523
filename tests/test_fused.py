"""The fused CUDA kernels (minivae/fused.py, minivae/kernels/*.cu) against their twins in minivae.ops.PlainOps.

Three levels, so that a machine without a GPU still checks the kernels:

1. **PTX**: every .cu file compiles with ``nvcc -ptx`` for float32 and float64, warnings as errors, and the
   float32 build does no double-precision arithmetic (a bare ``0.5`` would promote a float expression).
2. **Host**: every .cu file compiled as C++ by g++ (``tests/cuda_host_shim.h`` turns the CUDA keywords into C++ and
   the launch into a loop over simulated threads) runs inside :class:`FusedOps` on NumPy arrays, through a
   launcher that calls the kernels with ctypes; the results must equal :class:`PlainOps`'s. This checks the
   kernels' maths and every line of ``fused.py`` but the CuPy launch itself. Each test runs twice: with one
   simulated thread, and with a grid of 2 blocks of 3 threads, run one after the other, which checks that the
   grid-stride loops visit each element exactly once.
3. **GPU**: the same tests with FusedOps on CuPy, compared with PlainOps on CuPy and on NumPy; skipped, saying
   why, when no GPU is usable.

Inputs are column slices of wider buffers where the training step passes such views, output buffers start as NaN
(so an element left unwritten fails) inside a sentinel border (so a write outside the view fails), and
log-variances hit the clamp.
"""

import ctypes
import inspect
import re
import shutil
import subprocess
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minivae import backend
from minivae.fused import ACTIVATION_CODES, KERNEL_DIR, KERNELS, FusedOps, compile_options, kernel_source
from minivae.gradcheck import relative_error
from minivae.likelihoods import LOG_2PI
from minivae.ops import PlainOps, get_ops
from minivae.reparam import LOG_VAR_LIMIT
from test_docs import CITATION, doc_labels

ROOT = KERNEL_DIR.parents[1]
SHIM = ROOT / "tests" / "cuda_host_shim.h"
DTYPES = (np.float64, np.float32)

#: Largest relative error (gradcheck.relative_error) between the twins in float64. Both evaluate the same formula
#: in a few dozen roundings of 1.1e-16 each: 1e-6 leaves ten orders of margin and still fails any wrong formula.
F64_TOL = 1e-6
#: ... and in float32, measured against the scale of the terms each result is computed from (see assert_twins):
#: 64 units of roundoff u = 2**-24 (3.8e-6). Each side evaluates its formula in at most ~15 roundings of <= 1 u and
#: <= 3 transcendentals of <= 4 u (CUDA's expf/tanhf/log1pf/expm1f are within 2 ulp, glibc's 1-2, NumPy's SIMD 4),
#: and a sum of n terms adds log2(n) u in pairwise or tree order: about 30 u a side. The host measures <= 3 u.
F32_TOL = 64 * 2.0**-24

#: The log-variances a test may draw at or beyond the clamp: exactly at it (the gradient is 0 there), just inside,
#: and beyond.
CLAMP_HITS = (-1e4, -LOG_VAR_LIMIT - 1.0, -LOG_VAR_LIMIT, -LOG_VAR_LIMIT + 0.5, LOG_VAR_LIMIT - 0.5, LOG_VAR_LIMIT,
              LOG_VAR_LIMIT + 1.0, 1e4)
SENTINEL = 1234.5  # what the border around an output view holds, and must still hold afterwards

seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)
pads = st.sampled_from([(0, 0), (1, 0), (3, 1), (2, 2)])  # (extra columns, first column of the view)
gcc = shutil.which("g++")
nvcc = shutil.which("nvcc")


# =========================================================================== 1. PTX


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("file", sorted(KERNELS))
def test_kernels_compile_to_ptx(file, dtype, tmp_path):
    if nvcc is None:
        pytest.skip("nvcc is not installed: the CUDA sources are not compiled here (the host check still runs)")
    ptx = tmp_path / f"{file}.ptx"
    command = [nvcc, "-ptx", "-arch=compute_80", "-Werror", "all-warnings", *compile_options(dtype),
               str(KERNEL_DIR / file), "-o", str(ptx)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"nvcc failed on {file} ({np.dtype(dtype).name}):\n{result.stderr}"
    text = ptx.read_text()
    assert sorted(re.findall(r"\.entry\s+(\w+)\(", text)) == sorted(KERNELS[file])  # unmangled: extern "C"
    if dtype == np.float32:
        doubles = [line.strip() for line in text.splitlines() if re.search(r"\.f64\b", line)]
        assert not doubles, f"the float32 build of {file} computes in double precision: {doubles[:5]}"


@pytest.mark.parametrize("file", sorted(KERNELS))
def test_the_source_compiled_at_run_time_carries_its_headers(file, tmp_path):
    """NVRTC gets kernel_source(): headers inlined, so CuPy's cache key (source + options) changes with them."""
    source = kernel_source(file)
    assert '#include "' not in source
    if nvcc is None:
        pytest.skip("nvcc is not installed: the inlined source is not compiled here")
    inlined = tmp_path / file  # compiled without the -I option: nothing left to find
    inlined.write_text(source)
    options = [o for o in compile_options(np.float32) if not o.startswith("-I")]
    result = subprocess.run([nvcc, "-ptx", "-arch=compute_80", *options, str(inlined), "-o", str(tmp_path / "k.ptx")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# =========================================================================== 2. host: the sources as C++


def parse_signature(file: str, kernel: str) -> list:
    """The kinds of a kernel's parameters, from its source: "pointer", "long long", "int" or "real"."""
    match = re.search(rf'extern "C" __global__ void {kernel}\((.*?)\)\s*{{', kernel_source(file), re.S)
    assert match, f"no kernel {kernel} in {file}"
    kinds = []
    for parameter in match.group(1).split(","):
        words = parameter.split()
        kinds.append("pointer" if "*" in parameter else "long long" if words[:2] == ["long", "long"] else words[0])
    return kinds


#: The C type and the NumPy scalar type FusedOps must pass for each kind of parameter.
ARG_KINDS = {"long long": (ctypes.c_longlong, np.int64), "int": (ctypes.c_int, np.int32)}


class HostLauncher:
    """Runs the kernels compiled as C++ on NumPy arrays: a stand-in for fused.CudaLauncher."""

    device = "cpu"

    def __init__(self, build, grid=(1, 1)):
        self.build, self.grid = build, grid

    def __call__(self, file, name, dtype, n_threads, args):
        library = self.build(file, dtype)
        kinds = parse_signature(file, name)
        assert len(args) == len(kinds), f"{name}: FusedOps passes {len(args)} arguments, the kernel takes {len(kinds)}"
        c_args = []
        for position, (arg, kind) in enumerate(zip(args, kinds)):
            if kind == "pointer":
                assert isinstance(arg, np.ndarray) and arg.dtype == dtype, f"{name} argument {position}: {arg!r}"
                c_args.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                c_type, np_type = ARG_KINDS.get(kind, (ctypes.c_double, np.float64) if dtype == np.float64
                                                else (ctypes.c_float, np.float32))
                assert type(arg) is np_type, f"{name} argument {position} ({kind}): got {type(arg).__name__}"
                c_args.append(c_type(arg))
        blocks, threads = self.grid
        for block in range(blocks):
            for thread in range(threads):
                library.minivae_host_set_thread(block, thread, blocks, threads)
                getattr(library, name)(*c_args)


@pytest.fixture(scope="session")
def host_build(tmp_path_factory):
    """``build(file, dtype)``: the kernel file compiled by g++ as a shared library, once per session."""
    if gcc is None:
        pytest.skip("g++ is not installed: the kernels' maths cannot be checked on the host")
    directory, built = tmp_path_factory.mktemp("host_kernels"), {}

    def build(file, dtype):
        key = (file, np.dtype(dtype).name)
        if key not in built:
            output = directory / f"{file}.{key[1]}.so"
            command = [gcc, "-x", "c++", "-include", str(SHIM), "-shared", "-fPIC", "-O2", "-Wall", "-Wextra",
                       "-Wdouble-promotion", "-Werror", *compile_options(dtype), str(KERNEL_DIR / file),
                       "-o", str(output)]
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
            built[key] = ctypes.CDLL(str(output)) if result.returncode == 0 else result.stderr
        assert not isinstance(built[key], str), f"g++ failed on {file} ({key[1]}):\n{built[key]}"
        return built[key]

    return build


class Target(NamedTuple):
    """Where FusedOps runs: its ops, how inputs get there, and whether PlainOps runs there too."""

    name: str
    ops: object
    put: object  # numpy array -> an array on the target's device (a fresh copy)
    device: str


@pytest.fixture(scope="session", params=["host", "host-grid", "cuda"])
def target(request):
    if request.param == "cuda":
        ok, why = backend.cuda_status()
        if not ok:
            pytest.skip(f"FusedOps on a GPU: {why}")
        return Target("cuda", FusedOps(), lambda a: backend.to_device(a, "cuda"), "cuda")
    build = request.getfixturevalue("host_build")
    grid = (1, 1) if request.param == "host" else (2, 3)
    return Target(request.param, FusedOps(HostLauncher(build, grid)), np.copy, "cpu")


# --------------------------------------------------------------------------- inputs and comparisons


class Buffer(NamedTuple):
    """An array as the view ``parent[..., start:start + cols]`` of a wider buffer (the layout under test)."""

    parent: np.ndarray
    start: int
    cols: int

    @property
    def values(self) -> np.ndarray:
        return self.parent[..., self.start:self.start + self.cols]

    def on(self, put):
        """The view, in a fresh copy of the parent on a device."""
        return put(self.parent)[..., self.start:self.start + self.cols]


def buffer(values, dtype, pad=(0, 0)) -> Buffer:
    """``values`` (..., C) placed at columns ``start:start + C`` of a (..., C + extra) buffer of sentinels."""
    extra, start = pad
    parent = np.full(values.shape[:-1] + (values.shape[-1] + extra,), SENTINEL, dtype=dtype)
    parent[..., start:start + values.shape[-1]] = values
    return Buffer(parent, start, values.shape[-1])


def output(shape, dtype, pad=(0, 0)) -> Buffer:
    """An output view full of NaN, inside a border of sentinels."""
    return buffer(np.full(shape, np.nan), dtype, pad)


def log_vars(rng, shape) -> np.ndarray:
    """Log-variances, about one in four at or beyond the clamp."""
    log_var = rng.normal(0.0, 2.0, shape)
    hit = rng.random(shape) < 0.25
    log_var[hit] = rng.choice(CLAMP_HITS, size=int(hit.sum()))
    return log_var


def twins(target, op) -> dict:
    """``op(ops, put)`` by PlainOps on NumPy, by FusedOps on the target and, on a GPU, by PlainOps there too.

    ``op`` builds its arrays with ``put`` and returns a dict of results; returns {implementation: results in NumPy}.
    """
    runs = {"plain": op(PlainOps(), np.copy), target.name: op(target.ops, target.put)}
    if target.device == "cuda":
        runs["plain on cuda"] = op(PlainOps(), target.put)
    return {key: {name: None if value is None else backend.to_numpy(value) for name, value in results.items()}
            for key, results in runs.items()}


def assert_twins(runs: dict, name: str, dtype, terms=0.0):
    """Every implementation's ``name`` equals PlainOps-on-NumPy's, within the tolerance of the dtype.

    float64: relative_error <= F64_TOL. float32: the largest difference over the larger of the result's scale and
    ``terms``, the scale of the terms the result is computed from (an array or a number). Where those cancel, the
    rounding error is a fraction of the terms, not of the result, and the result's own scale would make a correct
    kernel fail on a draw whose terms happen to cancel everywhere.
    """
    want = runs["plain"][name]
    for key, results in runs.items():
        got = results[name]
        if want is None or got is None:
            assert got is None and want is None, f"{name}: {key} returned {got!r}, plain {want!r}"
            continue
        assert got.shape == want.shape and got.dtype == want.dtype, f"{name}: {key} {got.shape} {got.dtype}"
        if np.dtype(dtype) == np.float64:
            err, tol = relative_error(got, want), F64_TOL
        else:
            scale = max(float(np.max(np.abs(want.astype(np.float64)), initial=0.0)), float(np.max(terms)))
            diff = float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0))
            err, tol = (diff / scale if scale else diff), F32_TOL
        assert err <= tol, f"{name}: {key} differs from plain by a relative {err:.3g} > {tol:.3g} ({np.dtype(dtype)})"


def assert_border_kept(view, what: str):
    """The columns of the parent outside the view still hold the sentinel: the kernel wrote inside the view only."""
    parent = view.base if view.base is not None else view
    start = (address(view) - address(parent)) // view.itemsize  # the view's first column in its parent
    inside = np.zeros(parent.shape, dtype=bool)
    inside[..., start:start + view.shape[-1]] = True
    assert np.all(backend.to_numpy(parent)[~inside] == SENTINEL), f"{what}: written outside its view"


def address(array) -> int:
    """Where an array's first element is, in host or device memory."""
    return array.ctypes.data if isinstance(array, np.ndarray) else array.data.ptr


# --------------------------------------------------------------------------- bias + activation


@given(seed=seeds, dtype=dtypes, n=st.integers(1, 5), h=st.integers(1, 7),
       activation=st.sampled_from(sorted(ACTIVATION_CODES)))
def test_bias_act_matches_plain(target, seed, dtype, n, h, activation):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.0, 3.0, (n, h)).astype(dtype), rng.normal(0.0, 1.0, h).astype(dtype)

    def op(ops, put):
        out = put(a)
        assert ops.bias_act(out, put(b), activation) is out
        return {"a": out}

    # phi' <= 1 for every activation, so the rounding of a + b, u |a + b| <= u (|a| + |b|), sets the scale.
    assert_twins(twins(target, op), "a", dtype, terms=np.abs(a) + np.abs(b))


@given(seed=seeds, dtype=dtypes, shape=st.sampled_from([(1, 1), (3, 4), (2, 3, 5), (7,)]),
       activation=st.sampled_from(sorted(ACTIVATION_CODES)))
def test_act_backward_matches_plain(target, seed, dtype, shape, activation):
    rng = np.random.default_rng(seed)
    h = PlainOps().bias_act(rng.normal(0.0, 3.0, shape).reshape(-1, shape[-1]), np.zeros(shape[-1]), activation)
    h, dh = h.reshape(shape).astype(dtype), rng.normal(0.0, 1.0, shape).astype(dtype)

    def op(ops, put):
        out = put(dh)
        assert ops.act_backward(out, put(h), activation) is out
        return {"dh": out}

    assert_twins(twins(target, op), "dh", dtype, terms=np.abs(dh) * (1.0 + h.astype(np.float64) ** 2))


# --------------------------------------------------------------------------- the encoder's head


def head_inputs(rng, dtype, s, n, k, pads):
    """The encoder output, the noise and the z and dz views, laid out as a training step lays them out."""
    enc_out = np.concatenate([rng.normal(0.0, 1.5, (n, k)), log_vars(rng, (n, k))], axis=1)
    return dict(enc_out=buffer(enc_out, dtype, pads[0]), noise=buffer(rng.normal(size=(s, n, k)), dtype, pads[1]),
                z=output((s, n, k), dtype, pads[2]), dz=buffer(rng.normal(size=(s, n, k)), dtype, pads[3]),
                denc_out=output((n, 2 * k), dtype, pads[4]))


def head_terms(inputs, dkl):
    """Scales of the terms of z, the KL, dmu and dlog_var_raw (float64), for the float32 comparison."""
    enc_out, noise, dz = (inputs[key].values.astype(np.float64) for key in ("enc_out", "noise", "dz"))
    k = enc_out.shape[1] // 2
    mu, log_var = enc_out[:, :k], np.clip(enc_out[:, k:], -LOG_VAR_LIMIT, LOG_VAR_LIMIT)
    std = np.exp(0.5 * log_var)
    return dict(z=np.abs(mu) + std * np.abs(noise),
                kl=0.5 * (mu**2 + np.abs(np.expm1(log_var)) + np.abs(log_var)).sum(axis=1),
                dmu=np.abs(dz).sum(axis=0) + abs(dkl) * np.abs(mu),
                dlog_var=0.5 * std * np.abs(dz * noise).sum(axis=0) + 0.5 * abs(dkl) * (np.exp(log_var) + 1.0))


@given(seed=seeds, dtype=dtypes, s=st.integers(1, 3), n=st.integers(1, 5), k=st.integers(1, 4),
       pads=st.lists(pads, min_size=5, max_size=5))
def test_head_forward_matches_plain(target, seed, dtype, s, n, k, pads):
    inputs = head_inputs(np.random.default_rng(seed), dtype, s, n, k, pads)

    def op(ops, put):
        z = inputs["z"].on(put)
        kl, _ = ops.head_forward(inputs["enc_out"].on(put), inputs["noise"].on(put), z)
        assert_border_kept(z, "z")
        return {"z": z, "kl": kl}

    runs, terms = twins(target, op), head_terms(inputs, 0.0)
    assert_twins(runs, "z", dtype, terms["z"])
    assert_twins(runs, "kl", dtype, terms["kl"])


@given(seed=seeds, dtype=dtypes, s=st.integers(1, 3), n=st.integers(1, 5), k=st.integers(1, 4),
       pads=st.lists(pads, min_size=5, max_size=5), dkl=st.sampled_from([0.0, 0.25, -1.5]), need_kl=st.booleans())
def test_head_backward_matches_plain(target, seed, dtype, s, n, k, pads, dkl, need_kl):
    # need_kl=False: the plain head leaves the KL's value out (a step without the loss); its gradient must not change
    inputs = head_inputs(np.random.default_rng(seed), dtype, s, n, k, pads)

    def op(ops, put):
        denc_out = inputs["denc_out"].on(put)
        kl, cache = ops.head_forward(inputs["enc_out"].on(put), inputs["noise"].on(put), inputs["z"].on(put),
                                     need_kl=need_kl)
        assert (kl is None) == (not need_kl and isinstance(ops, PlainOps))
        assert ops.head_backward(inputs["dz"].on(put), dkl, cache, denc_out) is denc_out
        assert_border_kept(denc_out, "denc_out")
        return {"dmu": denc_out[:, :k], "dlog_var_raw": denc_out[:, k:]}

    runs, terms = twins(target, op), head_terms(inputs, dkl)
    assert_twins(runs, "dmu", dtype, terms["dmu"])
    assert_twins(runs, "dlog_var_raw", dtype, terms["dlog_var"])
    raw = inputs["enc_out"].values[:, k:]
    outside = (raw <= -LOG_VAR_LIMIT) | (raw >= LOG_VAR_LIMIT)
    assert np.all(runs[target.name]["dlog_var_raw"][outside] == 0.0)  # the clamp passes no gradient


# --------------------------------------------------------------------------- likelihoods


@given(seed=seeds, dtype=dtypes, s=st.integers(1, 3), n=st.integers(1, 5), d=st.integers(1, 6),
       pads=st.lists(pads, min_size=3, max_size=3), need_loss=st.booleans(), scale=st.sampled_from([None, -0.5]))
def test_bernoulli_grad_matches_plain(target, seed, dtype, s, n, d, pads, need_loss, scale):
    rng = np.random.default_rng(seed)
    scale = 1.0 / (s * n) if scale is None else scale
    logits = buffer(rng.normal(0.0, 4.0, (s, n, d)), dtype, pads[0])
    x = rng.random((n, d))
    x[rng.random((n, d)) < 0.3] = 1.0  # binary pixels among the grey levels
    x = buffer(x, dtype, pads[1])
    dlogits = output((s, n, d), dtype, pads[2])

    def op(ops, put):
        out = dlogits.on(put)
        loss = ops.bernoulli_grad(logits.on(put), x.on(put), scale, out, need_loss)
        assert_border_kept(out, "dlogits")
        return {"dlogits": out, "loss": loss}

    runs = twins(target, op)
    assert_twins(runs, "dlogits", dtype, terms=abs(scale))  # |sigma(l) - x| <= 1: scale bounds the terms
    l64, x64 = logits.values.astype(np.float64), x.values.astype(np.float64)
    assert_twins(runs, "loss", dtype, terms=np.sum(np.logaddexp(l64, 0.0) + np.abs(x64 * l64)))


GAUSSIAN_LAYOUTS = ("fixed", "per_dim", "per_example")


@given(seed=seeds, dtype=dtypes, s=st.integers(1, 3), n=st.integers(1, 5), d=st.integers(1, 6),
       layout=st.sampled_from(GAUSSIAN_LAYOUTS), pads=st.lists(pads, min_size=3, max_size=3),
       need_loss=st.booleans())
def test_gaussian_grad_matches_plain(target, seed, dtype, s, n, d, layout, pads, need_loss):
    rng = np.random.default_rng(seed)
    scale = 1.0 / (s * n)
    x = buffer(rng.normal(size=(n, d)), dtype, pads[1])
    if layout == "per_example":  # [mean, log_var] side by side in the decoder output, gradients likewise
        dec_out = buffer(np.concatenate([rng.normal(size=(s, n, d)), log_vars(rng, (s, n, d))], axis=2), dtype,
                         pads[0])
        ddec_out = output((s, n, 2 * d), dtype, pads[2])

        def arrays(put):  # mean, log_var, dmean, dlog_var and the whole output view (for the border check)
            out, dout = dec_out.on(put), ddec_out.on(put)
            return out[..., :d], out[..., d:], dout[..., :d], dout[..., d:], dout
    else:  # the mean is the whole decoder output; one log-variance, or one per dimension
        mean, dmean = buffer(rng.normal(size=(s, n, d)), dtype, pads[0]), output((s, n, d), dtype, pads[2])
        log_var = log_vars(rng, (1, 1, 1) if layout == "fixed" else (1, 1, d)).astype(dtype)

        def arrays(put):
            dmean_ = dmean.on(put)
            return mean.on(put), put(log_var), dmean_, put(np.full(log_var.shape, np.nan, dtype=dtype)), dmean_

    def op(ops, put):
        mean_, log_var_, dmean_, dlog_var_, written = arrays(put)
        loss = ops.gaussian_grad(mean_, log_var_, x.on(put), scale, dmean_, dlog_var_, need_loss)
        assert_border_kept(written, "the decoder output's gradient")
        return {"dmean": dmean_, "dlog_var": dlog_var_, "loss": loss}

    runs = twins(target, op)
    mean_, log_var_ = (a.astype(np.float64) for a in arrays(np.copy)[:2])
    inv_var = np.exp(-np.clip(log_var_, -LOG_VAR_LIMIT, LOG_VAR_LIMIT))
    spread = np.abs(mean_) + np.abs(x.values.astype(np.float64))  # the rounding of m - x is u (|m| + |x|)
    assert_twins(runs, "dmean", dtype, terms=scale * spread * inv_var)
    per_elem = 0.5 * scale * (1.0 + spread**2 * inv_var)
    axes = tuple(i for i in range(3) if log_var_.shape[i] == 1 and mean_.shape[i] != 1)
    assert_twins(runs, "dlog_var", dtype, terms=per_elem.sum(axis=axes) if axes else per_elem)
    assert_twins(runs, "loss", dtype,
                 terms=0.5 * np.sum(LOG_2PI + np.abs(np.log(inv_var)) + spread**2 * inv_var))


# --------------------------------------------------------------------------- Adam


@given(seed=seeds, dtype=dtypes, size=st.integers(1, 40), t=st.sampled_from([1, 2, 100]))
def test_adam_matches_plain(target, seed, dtype, size, t):
    rng = np.random.default_rng(seed)
    beta1, beta2, lr, eps = 0.9, 0.999, 1e-2, 1e-8
    root_c2 = (1.0 - beta2**t) ** 0.5
    lr_t, eps_t = lr * root_c2 / (1.0 - beta1**t), eps * root_c2
    data, grad, m = (rng.normal(size=size).astype(dtype) for _ in range(3))
    v = (rng.normal(size=size) ** 2).astype(dtype)
    v[rng.random(size) < 0.2] = 0.0  # a parameter that never had a gradient

    def op(ops, put):
        arrays = [put(a) for a in (data, grad, m, v)]
        ops.adam(*arrays, put(np.empty_like(data)), beta1, beta2, lr_t, eps_t)
        return dict(zip(("data", "grad", "m", "v"), arrays))

    runs = twins(target, op)
    g = np.abs(grad.astype(np.float64))
    m_terms, v_terms = np.abs(m) + g, v + g**2
    assert_twins(runs, "m", dtype, m_terms)
    assert_twins(runs, "v", dtype, v_terms)
    assert_twins(runs, "data", dtype, np.abs(data) + lr_t * m_terms / (np.sqrt(v_terms) + eps_t))
    assert_twins(runs, "grad", dtype)  # read only


# --------------------------------------------------------------------------- sizes that span many blocks

#: More elements than one launch has threads (fused.MAX_BLOCKS x fused.THREADS = 262,144): on a GPU every thread's
#: grid-stride loop goes round more than once, as at the benchmark's sizes (batch 4096: 3.2 M logits, 650 k
#: parameters). On the host the "host-grid" target runs the same loops with 6 threads.
MANY = 300_001


@pytest.mark.parametrize("operation", ["bias_act", "act_backward", "head", "bernoulli_grad", "adam"])
def test_kernels_match_plain_at_sizes_spanning_many_blocks(target, operation):
    from minivae.fused import MAX_BLOCKS, THREADS

    assert MANY > MAX_BLOCKS * THREADS
    rng, dtype = np.random.default_rng(7), np.float32
    if operation in ("bias_act", "act_backward"):
        a, b = rng.normal(0.0, 3.0, (MANY // 401 + 1, 401)).astype(dtype), rng.normal(size=401).astype(dtype)

        def op(ops, put):
            h = ops.bias_act(put(a), put(b), "tanh")
            if operation == "bias_act":
                return {"out": h}
            return {"out": ops.act_backward(put(np.ones_like(a)), h, "tanh")}

        assert_twins(twins(target, op), "out", dtype, terms=np.abs(a) + np.abs(b) + 1.0)
    elif operation == "head":  # one thread per example forward, one per (n, k) backward
        inputs = head_inputs(rng, dtype, 2, MANY // 2, 1, [(0, 0)] * 5)

        def op(ops, put):
            z = inputs["z"].on(put)
            enc_out = inputs["enc_out"].on(put)
            kl, cache = ops.head_forward(enc_out, inputs["noise"].on(put), z)
            denc_out = ops.head_backward(inputs["dz"].on(put), 0.5, cache, inputs["denc_out"].on(put))
            return {"z": z, "kl": kl, "denc_out": denc_out}

        runs, terms = twins(target, op), head_terms(inputs, 0.5)
        assert_twins(runs, "z", dtype, terms["z"])
        assert_twins(runs, "kl", dtype, terms["kl"])
        assert_twins(runs, "denc_out", dtype, np.concatenate([terms["dmu"], terms["dlog_var"]], axis=1))
    elif operation == "bernoulli_grad":
        logits = rng.normal(0.0, 4.0, (1, MANY // 784 + 1, 784)).astype(dtype)
        x = (rng.random(logits.shape[1:]) < 0.3).astype(dtype)
        scale = 1.0 / logits.shape[1]

        def op(ops, put):
            out = put(np.empty_like(logits))
            return {"dlogits": out, "loss": ops.bernoulli_grad(put(logits), put(x), scale, out, True)}

        runs = twins(target, op)
        assert_twins(runs, "dlogits", dtype, terms=scale)
        l64 = logits.astype(np.float64)
        assert_twins(runs, "loss", dtype, terms=np.sum(np.logaddexp(l64, 0.0) + np.abs(x * l64)))
    else:
        data, grad, m = (rng.normal(size=2 * MANY).astype(dtype) for _ in range(3))
        v = (rng.normal(size=2 * MANY) ** 2).astype(dtype)

        def op(ops, put):
            arrays = [put(array) for array in (data, grad, m, v)]
            ops.adam(*arrays, put(np.empty_like(data)), 0.9, 0.999, 1e-3, 1e-8)
            return dict(zip(("data", "m", "v"), (arrays[0], arrays[2], arrays[3])))

        runs = twins(target, op)
        g = np.abs(grad.astype(np.float64))
        m_terms, v_terms = np.abs(m) + g, v + g**2
        assert_twins(runs, "m", dtype, m_terms)
        assert_twins(runs, "v", dtype, v_terms)
        assert_twins(runs, "data", dtype, np.abs(data) + 1e-3 * m_terms / (np.sqrt(v_terms) + 1e-8))


# --------------------------------------------------------------------------- what FusedOps accepts


def test_fused_ops_has_exactly_the_methods_and_signatures_of_plain_ops():
    public = {name for name in dir(PlainOps) if not name.startswith("_")}
    assert public == {name for name in dir(FusedOps) if not name.startswith("_")}
    for name in public - {"name"}:
        fused, plain = (inspect.signature(getattr(cls, name)).parameters.values() for cls in (FusedOps, PlainOps))
        assert [(p.name, p.kind, p.default) for p in fused] == [(p.name, p.kind, p.default) for p in plain], name


def test_numpy_arrays_are_refused_naming_the_argument():
    a = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(TypeError, match=r"^a: expected a CuPy array \(on the GPU\), got numpy\.ndarray"):
        FusedOps().bias_act(a, np.zeros(3, dtype=np.float32), "relu")


@pytest.fixture(scope="module")
def host_ops(host_build):
    return FusedOps(HostLauncher(host_build))


def test_bad_arrays_are_refused_naming_the_argument_the_expected_and_the_received(host_ops):
    f32, f64 = np.float32, np.float64
    with pytest.raises(TypeError, match=r"^a: expected float32 or float64, got int64"):
        host_ops.bias_act(np.zeros((2, 3), dtype=np.int64), np.zeros(3), "relu")
    with pytest.raises(TypeError, match=r"^b: expected float32 \(the dtype of the other arrays\), got float64"):
        host_ops.bias_act(np.zeros((2, 3), f32), np.zeros(3, f64), "relu")
    with pytest.raises(ValueError, match=r"^b: expected shape \(3,\), got \(4,\)"):
        host_ops.bias_act(np.zeros((2, 3)), np.zeros(4), "relu")
    with pytest.raises(ValueError, match=r"^a: expected a C-contiguous array"):
        host_ops.bias_act(np.zeros((3, 2)).T, np.zeros(3), "relu")
    with pytest.raises(ValueError, match=r"^activation: expected a known activation, got 'swish'"):
        host_ops.act_backward(np.zeros(3), np.zeros(3), "swish")
    with pytest.raises(ValueError, match=r"^enc_out: expected \(N, 2K\)"):
        host_ops.head_forward(np.zeros((2, 3)), np.zeros((1, 2, 1)), np.zeros((1, 2, 1)))
    with pytest.raises(ValueError, match=r"^z: expected shape \(1, 2, 2\), got \(2, 2, 2\)"):
        host_ops.head_forward(np.zeros((2, 4)), np.zeros((1, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"^noise: expected adjacent elements along the last axis"):
        host_ops.head_forward(np.zeros((2, 4)), np.zeros((1, 2, 4))[..., ::2], np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match=r"^z: expected the \(S, N, \.\) axes to collapse into rows"):
        host_ops.head_forward(np.zeros((2, 4)), np.zeros((2, 2, 2)), np.zeros((2, 2, 2)).transpose(1, 0, 2))
    with pytest.raises(ValueError, match=r"^dlogits: expected rows that do not overlap"):
        host_ops.bernoulli_grad(np.zeros((1, 2, 3)), np.zeros((2, 3)), 1.0,
                                np.broadcast_to(np.zeros(3), (1, 2, 3)), False)
    with pytest.raises(ValueError, match=r"^log_var: expected shape \(1, 1, 1\), \(1, 1, 3\) or the mean's"):
        host_ops.gaussian_grad(np.zeros((1, 2, 3)), np.zeros((1, 2, 1)), np.zeros((2, 3)), 1.0,
                               np.zeros((1, 2, 3)), np.zeros((1, 2, 1)), False)
    with pytest.raises(ValueError, match=r"^v: expected shape \(4,\), got \(5,\)"):
        host_ops.adam(*(np.zeros(4),) * 3, np.zeros(5), np.zeros(4), 0.9, 0.999, 1e-3, 1e-8)


def test_plain_and_fused_refuse_the_same_unknown_activation(host_ops):
    for ops in (PlainOps(), host_ops):
        with pytest.raises(ValueError, match="activation: expected a known activation"):
            ops.bias_act(np.zeros((1, 2)), np.zeros(2), "gelu")


# --------------------------------------------------------------------------- the sources: what they promise


@pytest.mark.parametrize("file", sorted(KERNELS))
def test_each_kernel_names_its_twin_and_cites_equations_that_exist(file):
    source = kernel_source(file)
    assert sorted(re.findall(r'extern "C" __global__ void (\w+)\(', source)) == sorted(KERNELS[file])
    for kernel in KERNELS[file]:
        # The comment block right above the kernel: its formula, its equation, its twin.
        comment = source.split(f'extern "C" __global__ void {kernel}(')[0].rstrip().rsplit("\n\n", 1)[-1]
        twin = re.search(r"twin: minivae\.ops\.PlainOps\.(\w+)", comment)
        assert twin and hasattr(PlainOps, twin.group(1)), f"{kernel}: no 'twin: minivae.ops.PlainOps.<method>'"
        assert CITATION.search(comment), f"{kernel}: its comment cites no equation (eq. label)"
    labels = {m.group("quoted") or m.group("bare") for m in CITATION.finditer(source)}
    assert labels and labels <= set(doc_labels()), f"{file} cites labels not in docs/: {labels - set(doc_labels())}"
    code = re.sub(r"//[^\n]*", "", source)
    assert "__shared__" not in code and "atomic" not in code  # deterministic by construction


def test_kernel_sources_are_package_data():
    setup_cfg = (ROOT / "setup.cfg").read_text()
    assert re.search(r"\[options\.package_data\]\s*\n\s*minivae\s*=\s*kernels/\*\.cu", setup_cfg)
    assert sorted(path.name for path in KERNEL_DIR.glob("*.cu")) == sorted(KERNELS)


# --------------------------------------------------------------------------- the dispatch point


def test_get_ops_refuses_fused_kernels_off_the_gpu():
    with pytest.raises(ValueError, match=r"^kernels: 'fused' runs CUDA kernels and needs device='cuda', got "
                                         r"device='cpu'"):
        get_ops("fused", "cpu")


@pytest.mark.parametrize("bad", ["triton", "Fused", None, 1])
def test_get_ops_refuses_unknown_kernels(bad):
    with pytest.raises(ValueError, match=r"^kernels: expected one of \('plain', 'fused'\)"):
        get_ops(bad, "cpu")


def test_get_ops_picks_the_implementation():
    assert isinstance(get_ops("plain", "cpu"), PlainOps)
    assert isinstance(get_ops("fused", "cuda"), FusedOps)  # compiles nothing until a kernel runs


def test_compiling_without_a_gpu_says_why():
    ok, why = backend.cuda_status()
    if ok:
        pytest.skip("a CUDA GPU is available here")
    with pytest.raises(RuntimeError, match=r"^kernels: the fused CUDA kernels need a GPU, but ") as info:
        backend.raw_module(kernel_source("adam.cu"), compile_options(np.float32))
    assert why in str(info.value)
