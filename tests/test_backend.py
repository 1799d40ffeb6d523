"""The array backend: NumPy always; CuPy only when installed with a GPU."""

import numpy as np
import pytest

from minivae import backend


def test_cpu_is_numpy():
    assert backend.resolve_device("cpu") == "cpu"
    assert backend.array_module("cpu") is np
    assert backend.get_array_module(np.zeros(2)) is np
    assert backend.device_of(np.zeros(2)) == "cpu"


def test_auto_falls_back_to_cpu_without_a_gpu():
    ok, _ = backend.cuda_status()
    assert backend.resolve_device("auto") == ("cuda" if ok else "cpu")


def test_cuda_without_a_gpu_says_why():
    ok, why = backend.cuda_status()
    if ok:
        pytest.skip("a CUDA GPU is available here")
    with pytest.raises(RuntimeError, match="device: 'cuda' was requested but") as info:
        backend.resolve_device("cuda")
    assert ("not installed" in str(info.value)) or ("no CUDA GPU" in str(info.value)) or ("failed" in str(info.value))


@pytest.mark.parametrize("bad", ["gpu", "CPU", None, 0])
def test_unknown_device_is_named(bad):
    with pytest.raises(ValueError, match="device:"):
        backend.resolve_device(bad)


def test_to_numpy_and_to_device_on_cpu():
    x = backend.to_device([1.0, 2.0], "cpu", dtype=np.float32)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32
    np.testing.assert_array_equal(backend.to_numpy(x), [1.0, 2.0])
