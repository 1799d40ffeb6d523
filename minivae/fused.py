r"""The elementwise chains of a training step as hand-written CUDA kernels: ``kernels="fused"``.

:class:`FusedOps` has exactly the methods, arguments and in-place results of
:class:`minivae.ops.PlainOps`, which stays the reference; each method checks
its arrays and launches one kernel from ``minivae/kernels/*.cu`` (two for a
loss or a broadcast log-variance, which are summed with ``xp.sum`` after the
kernel). The maths, one formula per kernel, is in those files, each kernel
naming its equation and its twin; what each fuses and how the kernels are
checked without a GPU: ``docs/kernels.md``.

The sources are read from the package and compiled at run time, once per file
and element type (``-Dreal=float`` or ``-Dreal=double``, see
:func:`compile_options`), by NVRTC through :func:`minivae.backend.raw_module`:
CuPy is imported only there.

Layout. A kernel reads a matrix as rows of contiguous elements a fixed number
of elements apart (its leading dimension), so the column slices a training
step passes (``mu = enc_out[:, :K]``, the data ``x = enc_in[:, :D]``,
``z = dec_in[..., :K]``) need no copy; an (S, N, D) array is read as S N such
rows. What cannot be read this way is refused with a ``ValueError`` naming
the argument rather than copied behind the caller's back.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .backend import device_of, get_array_module, raw_module
from .layers import LEAKY_SLOPE
from .likelihoods import LOG_2PI
from .reparam import LOG_VAR_LIMIT

#: Where the kernel sources live (installed as package data).
KERNEL_DIR = Path(__file__).parent / "kernels"
#: One file per family of operations, and the kernels (``extern "C" __global__`` functions) it defines.
KERNELS = {"bias_act.cu": ("bias_act_forward", "act_backward"), "reparam_kl.cu": ("head_forward", "head_backward"),
           "nll.cu": ("bernoulli_grad", "gaussian_grad"), "adam.cu": ("adam",)}
#: The activation codes the kernels switch on (``ACT_*`` in ``bias_act.cu``).
ACTIVATION_CODES = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4, "softplus": 5}
#: The C type that ``real`` stands for, per NumPy dtype.
REAL_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

#: Threads per block. Every kernel runs a grid-stride loop, so this and the block count change the speed only.
THREADS = 256
#: At most this many blocks: 256 Ki threads, about what a large GPU keeps resident at once (an H100: 132 SMs x 2048);
#: beyond that, each thread loops over more elements.
MAX_BLOCKS = 1024


def compile_options(dtype) -> tuple:
    """The compiler definitions for one element type: ``real`` and the constants the kernels share with Python.

    The same options serve NVRTC (at run time), ``nvcc -ptx`` and ``g++`` (in the tests).
    """
    dtype = np.dtype(dtype)
    if dtype not in REAL_TYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    return (f"-Dreal={REAL_TYPES[dtype]}", f"-DLEAKY_SLOPE={LEAKY_SLOPE!r}", f"-DLOG_VAR_LIMIT={LOG_VAR_LIMIT!r}",
            f"-DLOG_2PI={LOG_2PI!r}", f"-I{KERNEL_DIR}")  # -I: the shared header log_var_clamp.cuh


def kernel_source(file: str) -> str:
    """The CUDA source of one of the files of :data:`KERNELS`, with its ``#include "*.cuh"`` lines replaced by the
    headers themselves.

    CuPy keys its on-disk cache of compiled kernels on the source text and the options; a header found through
    ``-I`` would not be part of the key, and an edited header would go unnoticed.
    """
    text = (KERNEL_DIR / file).read_text(encoding="utf-8")
    return re.sub(r'(?m)^#include "([\w.]+\.cuh)".*$', lambda m: (KERNEL_DIR / m.group(1)).read_text(encoding="utf-8"),
                  text)


def n_blocks(n_threads: int) -> int:
    """Blocks of :data:`THREADS` for ``n_threads`` loop iterations (at least 1, at most :data:`MAX_BLOCKS`)."""
    return max(1, min(MAX_BLOCKS, -(-n_threads // THREADS)))


class CudaLauncher:
    """Compiles each kernel file once per element type (for the whole process) and launches on the current GPU."""

    device = "cuda"
    _functions: dict = {}  # (file, dtype, kernel name) -> cupy.RawKernel, shared by every instance

    def __call__(self, file: str, name: str, dtype, n_threads: int, args: tuple):
        key = (file, np.dtype(dtype), name)
        if key not in self._functions:
            module = raw_module(kernel_source(file), compile_options(dtype))
            for kernel in KERNELS[file]:  # get_function compiles the module on the first call
                self._functions[(file, np.dtype(dtype), kernel)] = module.get_function(kernel)
        self._functions[key]((n_blocks(n_threads),), (THREADS,), args)


class FusedHeadCache(NamedTuple):
    """What :meth:`FusedOps.head_backward` needs: the inputs of the forward, which its kernel reads again."""

    enc_out: object  # (N, 2K) [mu, log_var_raw]: the backward recomputes the clamp and sigma from it
    noise: object  # (S, N, K) epsilon


class FusedOps:
    """The elementwise chains as one CUDA kernel each; the twin of :class:`minivae.ops.PlainOps`.

    ``launcher`` runs a kernel: ``launcher(file, name, dtype, n_threads, args)``, with a ``device`` attribute
    naming where its arrays live. The default, :class:`CudaLauncher`, compiles with NVRTC and launches with
    CuPy; ``tests/test_fused.py`` passes one that runs the same sources compiled as C++ on NumPy arrays, so
    every line here but the CuPy launch, and every line of the kernels, is tested without a GPU.

    An output must not share memory with an input other than its own in-place argument (the plain code computes
    into temporaries first; a kernel writes as it reads).
    """

    name = "fused"

    def __init__(self, launcher=None):
        self._launch = CudaLauncher() if launcher is None else launcher
        self._scratch = {}  # (purpose, dtype) -> a contiguous buffer, grown when too small

    # ------------------------------------------------------------ bias + activation

    def bias_act(self, a, b, activation: str):
        r""":math:`a \leftarrow \phi(a + b)` in place; ``a`` (N, H) C-contiguous, ``b`` (H,) (eq. ``affine-fwd``).

        One kernel, ``bias_act_forward``.
        """
        code = _activation_code(activation)
        dtype = self._float_array("a", a, ndim=2)
        self._float_array("b", b, dtype=dtype, shape=(a.shape[1],))
        _c_contiguous("a", a)
        _c_contiguous("b", b)
        rows, cols = a.shape
        self._launch("bias_act.cu", "bias_act_forward", dtype, a.size, (_size(rows), _size(cols), a, b, _int(code)))
        return a

    def act_backward(self, dh, h, activation: str):
        r""":math:`\bar h \leftarrow \bar h \odot \phi'(a)` in place, :math:`\phi'` written in :math:`h = \phi(a)`
        (eq. ``act-from-output``); ``dh`` and ``h`` C-contiguous, of one shape. One kernel, ``act_backward``
        (none for the identity)."""
        code = _activation_code(activation)
        dtype = self._float_array("dh", dh)
        self._float_array("h", h, dtype=dtype, shape=dh.shape)
        _c_contiguous("dh", dh)
        _c_contiguous("h", h)
        if activation != "identity":
            self._launch("bias_act.cu", "act_backward", dtype, dh.size, (_size(dh.size), dh, h, _int(code)))
        return dh

    # ------------------------------------------------------------ the encoder's head

    def head_forward(self, enc_out, noise, z, need_kl: bool = True):
        r"""``z`` (S, N, K) :math:`\leftarrow \mu + \sigma\odot\varepsilon_s` (eq. ``reparam-fwd``) after the clamp
        (eq. ``logvar-clamp``); returns the per-example KL (N,) (eq. ``kl-fwd``) and the cache.

        One kernel, ``head_forward``, one thread per example. It writes the KL whatever ``need_kl`` says: the
        values are at hand in the same pass.
        """
        dtype = self._float_array("enc_out", enc_out, ndim=2)
        N, two_k = enc_out.shape
        if two_k % 2:
            raise ValueError(f"enc_out: expected (N, 2K) = [mu, log_var], an even number of columns, got {two_k}")
        K = two_k // 2
        self._float_array("noise", noise, dtype=dtype, ndim=3)
        S = noise.shape[0]
        if noise.shape[1:] != (N, K):
            raise ValueError(f"noise: expected shape (S, {N}, {K}) for an enc_out of shape {enc_out.shape}, "
                             f"got {noise.shape}")
        self._float_array("z", z, dtype=dtype, shape=noise.shape)
        ld_head = _leading_dim("enc_out", enc_out)
        kl = get_array_module(enc_out).empty((N,), dtype=dtype)
        self._launch("reparam_kl.cu", "head_forward", dtype, N,
                     (_size(S), _size(N), _size(K), enc_out[:, :K], enc_out[:, K:], _size(ld_head),
                      noise, _size(_leading_dim("noise", noise)), z, _size(_leading_dim("z", z, output=True)), kl))
        return kl, FusedHeadCache(enc_out, noise)

    def head_backward(self, dz, dkl: float, cache: FusedHeadCache, denc_out):
        r"""``denc_out`` (N, 2K) :math:`\leftarrow [\bar\mu, \overline{\log\sigma^2}_{\text{raw}}]` from :math:`\bar z`
        (S, N, K) and the KL's weight ``dkl`` for every example (eq. ``reparam-bwd``, ``kl-bwd``, ``logvar-clamp``).

        One kernel, ``head_backward``, one thread per (n, k).
        """
        enc_out, noise = cache
        dtype = self._float_array("dz", dz, shape=noise.shape)
        self._float_array("denc_out", denc_out, dtype=dtype, shape=enc_out.shape)
        S, N, K = noise.shape
        self._launch("reparam_kl.cu", "head_backward", dtype, N * K,
                     (_size(S), _size(N), _size(K), dz, _size(_leading_dim("dz", dz)), _real(dkl, dtype),
                      enc_out[:, :K], enc_out[:, K:], _size(_leading_dim("enc_out", enc_out)),
                      noise, _size(_leading_dim("noise", noise)),
                      denc_out[:, :K], denc_out[:, K:], _size(_leading_dim("denc_out", denc_out, output=True))))
        return denc_out

    # ------------------------------------------------------------ likelihoods

    def bernoulli_grad(self, logits, x, scale: float, dlogits, need_loss: bool):
        r"""``dlogits`` :math:`\leftarrow s\,(\sigma(\ell) - x)` (eq. ``bern-grad``); ``logits``, ``dlogits``
        (S, N, D), ``x`` (N, D). Returns the NLL summed over everything (eq. ``bern-nll``) when ``need_loss``.

        One kernel, ``bernoulli_grad``; with the loss, one ``xp.sum`` of its per-element output.
        """
        dtype = self._float_array("logits", logits, ndim=3)
        S, N, D = logits.shape
        self._float_array("x", x, dtype=dtype, shape=(N, D))
        self._float_array("dlogits", dlogits, dtype=dtype, shape=logits.shape)
        nll = self._buffer("nll", logits.size if need_loss else 1, dtype, logits)
        self._launch("nll.cu", "bernoulli_grad", dtype, logits.size,
                     (_size(S * N), _size(N), _size(D), logits, _size(_leading_dim("logits", logits)),
                      x, _size(_leading_dim("x", x)), _real(scale, dtype),
                      dlogits, _size(_leading_dim("dlogits", dlogits, output=True)), _int(bool(need_loss)), nll))
        return nll[:logits.size].sum() if need_loss else None

    def gaussian_grad(self, mean, log_var, x, scale: float, dmean, dlog_var, need_loss: bool):
        r"""The Gaussian NLL's gradients times ``scale`` (eq. ``gauss-grad``), written in place; the NLL summed over
        everything (eq. ``gauss-nll``) when ``need_loss``.

        ``mean``, ``dmean`` (S, N, D); ``x`` (N, D); ``log_var`` and ``dlog_var`` (1, 1, 1), (1, 1, D) or the mean's
        shape. One kernel, ``gaussian_grad``; it writes the per-element ``dlog_var`` straight into ``dlog_var``
        when that has the mean's shape, else into a scratch buffer then summed over the broadcast axes; with the
        loss, one ``xp.sum`` more.
        """
        dtype = self._float_array("mean", mean, ndim=3)
        S, N, D = mean.shape
        self._float_array("x", x, dtype=dtype, shape=(N, D))
        self._float_array("dmean", dmean, dtype=dtype, shape=mean.shape)
        self._float_array("log_var", log_var, dtype=dtype, ndim=3)
        if log_var.shape not in ((1, 1, 1), (1, 1, D), mean.shape):  # one; one per dimension; one per element
            raise ValueError(f"log_var: expected shape (1, 1, 1), (1, 1, {D}) or the mean's {mean.shape}, "
                             f"got {log_var.shape}")
        self._float_array("dlog_var", dlog_var, dtype=dtype, shape=log_var.shape)
        if log_var.shape == mean.shape:  # one per element: read and written like the mean
            lv_strides = (_leading_dim("log_var", log_var), 1)
            dlv_out, ld_dlv = dlog_var, _leading_dim("dlog_var", dlog_var, output=True)
        else:  # broadcast: one value for every row, and one per column or the same for all
            lv_strides = (0, log_var.strides[2] // log_var.itemsize if log_var.shape[2] > 1 else 0)
            dlv_out, ld_dlv = self._buffer("dlog_var", mean.size, dtype, mean), D
        nll = self._buffer("nll", mean.size if need_loss else 1, dtype, mean)
        self._launch("nll.cu", "gaussian_grad", dtype, mean.size,
                     (_size(S * N), _size(N), _size(D), mean, _size(_leading_dim("mean", mean)),
                      log_var, _size(lv_strides[0]), _size(lv_strides[1]), x, _size(_leading_dim("x", x)),
                      _real(scale, dtype), dmean, _size(_leading_dim("dmean", dmean, output=True)),
                      dlv_out, _size(ld_dlv), _int(bool(need_loss)), nll))
        if dlv_out is not dlog_var:  # undo the broadcast: sum over the axes along which log_var was repeated
            per_elem = dlv_out[:mean.size].reshape(mean.shape)
            axes = tuple(i for i in range(3) if log_var.shape[i] == 1 and mean.shape[i] != 1)
            dlog_var[...] = per_elem.sum(axis=axes, keepdims=True) if axes else per_elem
        return nll[:mean.size].sum() if need_loss else None

    # ------------------------------------------------------------ Adam

    def adam(self, data, grad, m, v, scratch, beta1: float, beta2: float, lr_t: float, eps_t: float):
        r"""One Adam update in one pass over the flat buffers (eq. ``adam-sums``); kernel ``adam``.

        ``data``, ``grad``, ``m``, ``v`` C-contiguous, of one shape. ``scratch`` is not used (the kernel keeps its
        temporaries in registers); it is accepted so that both implementations are called alike.
        """
        dtype = self._float_array("data", data)
        for name, array in (("grad", grad), ("m", m), ("v", v)):
            self._float_array(name, array, dtype=dtype, shape=data.shape)
        for name, array in (("data", data), ("grad", grad), ("m", m), ("v", v)):
            _c_contiguous(name, array)
        self._launch("adam.cu", "adam", dtype, data.size,
                     (_size(data.size), data, grad, m, v, _real(beta1, dtype), _real(beta2, dtype),
                      _real(lr_t, dtype), _real(eps_t, dtype)))

    # ------------------------------------------------------------ checks and buffers

    def _float_array(self, name: str, array, dtype=None, ndim=None, shape=None):
        """Check that ``array`` is a float32/float64 array on the launcher's device; return its dtype."""
        if device_of(array) != self._launch.device or not hasattr(array, "dtype"):
            expected = "a CuPy array (on the GPU)" if self._launch.device == "cuda" else "a NumPy array"
            raise TypeError(f"{name}: expected {expected}, got {type(array).__module__}.{type(array).__name__}")
        if array.dtype not in REAL_TYPES:
            raise TypeError(f"{name}: expected float32 or float64, got {array.dtype}")
        if dtype is not None and array.dtype != dtype:
            raise TypeError(f"{name}: expected {dtype} (the dtype of the other arrays), got {array.dtype}")
        if ndim is not None and array.ndim != ndim:
            raise ValueError(f"{name}: expected {ndim} dimensions, got shape {array.shape}")
        if shape is not None and tuple(array.shape) != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)}, got {array.shape}")
        return array.dtype

    def _buffer(self, purpose: str, size: int, dtype, like):
        """A reused contiguous scratch buffer of at least ``size`` elements on ``like``'s device."""
        key = (purpose, np.dtype(dtype))
        if key not in self._scratch or self._scratch[key].size < size:
            self._scratch[key] = get_array_module(like).empty((max(size, 1),), dtype=dtype)
        return self._scratch[key]


def _activation_code(activation) -> int:
    if not isinstance(activation, str) or activation not in ACTIVATION_CODES:
        raise ValueError(f"activation: expected a known activation, got {activation!r}")
    return ACTIVATION_CODES[activation]


def _c_contiguous(name: str, array):
    if not array.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array, got strides {array.strides} for shape "
                         f"{array.shape}")


def _leading_dim(name: str, array, output: bool = False) -> int:
    r"""Elements between consecutive rows of ``array`` read as rows of contiguous elements.

    A matrix (R, C) is R rows; an (S, N, C) array is S N rows, row :math:`s N + n`, which needs the sample
    stride to be N times the row stride (true of any column slice of a contiguous (S, N, W) or (S N, W)
    array). Elements within a row must be adjacent; an output's rows must not overlap.
    """
    *outer, cols = array.shape
    item = array.itemsize
    strides = array.strides
    if cols > 1 and strides[-1] != item:
        raise ValueError(f"{name}: expected adjacent elements along the last axis (stride {item} bytes), "
                         f"got strides {strides} for shape {array.shape}")
    if any(s % item for s in strides):
        raise ValueError(f"{name}: expected strides that are multiples of the item size {item}, got {strides}")
    # The stride of the axes of length > 1 in front of the last; axes of length 1 are never stepped over.
    used = [(n, s // item) for n, s in zip(outer, strides[:-1]) if n > 1]
    if not used:
        return cols
    if len(used) == 2 and used[0][1] != used[1][0] * used[1][1]:
        raise ValueError(f"{name}: expected the (S, N, .) axes to collapse into rows (sample stride = N x row stride),"
                         f" got strides {strides} for shape {array.shape}")
    ld = used[-1][1]
    if output and ld < cols:
        raise ValueError(f"{name}: expected rows that do not overlap (row stride >= {cols} elements), got {ld}")
    return ld


def _size(value) -> np.int64:
    return np.int64(value)  # a `long long` argument


def _int(value) -> np.int32:
    return np.int32(value)  # an `int` argument


def _real(value, dtype):
    return np.dtype(dtype).type(value)  # a `real` argument: float32 or float64
