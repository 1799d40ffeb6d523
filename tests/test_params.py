"""The flat parameter buffer and its named views."""

import numpy as np

from minivae.params import ParamBuffer


def test_views_share_memory_with_the_flat_buffers():
    p = ParamBuffer({"a.W": (2, 3), "a.b": (3,), "s": ()}, "float32")
    assert p.size == 10 and len(p) == 3 and p.names() == ["a.W", "a.b", "s"]
    p.data[:] = np.arange(10)
    np.testing.assert_array_equal(p["a.W"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(p["a.b"], [6, 7, 8])
    assert p["s"].shape == () and p["s"] == 9
    p.grads["a.b"][...] = 1.0  # writing a view writes the flat gradient
    np.testing.assert_array_equal(p.grad, [0] * 6 + [1] * 3 + [0])
    assert p.data.dtype == p.grad.dtype == np.float32
    assert p.offsets == {"a.W": (0, 6), "a.b": (6, 9), "s": (9, 10)}
