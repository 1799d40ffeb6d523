"""The GPU code path, run on the CPU against a stand-in for CuPy that refuses host arrays in device operations.

``tests/fake_cupy`` is not CuPy (see its docstring): this checks that nothing on
the ``device="cuda"`` path builds a NumPy array into a device computation or
hands a device array back where NumPy is expected, and that the GPU tests of
``tests/test_devices.py`` are themselves sound. It says nothing about CUDA; on
a machine with a GPU those tests run on the real CuPy instead.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minivae import backend

HERE = Path(__file__).parent


@pytest.mark.skipif(backend.cuda_status()[0], reason="a real GPU is here: tests/test_devices.py runs on CuPy itself")
def test_the_gpu_path_keeps_its_arrays_on_the_device():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE / "fake_cupy"), os.environ.get("PYTHONPATH", "")]))
    # The fused kernels need NVRTC; everything else on the GPU path runs.
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                             str(HERE / "test_devices.py"),
                             "-k", "not fused and not agree and not cli_runs"],
                            capture_output=True, text=True, env=env, cwd=HERE.parent, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" in result.stdout  # the two no-GPU error tests skip there
