"""numpy <-> ``scene.common.v1.Array``: raw little-endian bytes in C order, shape and dtype."""

from __future__ import annotations

import numpy as np

from scene.common.v1 import common_pb2

_TO_NUMPY = {
    common_pb2.DTYPE_UINT8: np.dtype("<u1"),
    common_pb2.DTYPE_UINT16: np.dtype("<u2"),
    common_pb2.DTYPE_INT32: np.dtype("<i4"),
    common_pb2.DTYPE_FLOAT16: np.dtype("<f2"),
    common_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
}
_FROM_NUMPY = {dtype: code for code, dtype in _TO_NUMPY.items()}


def array_to_proto(array: np.ndarray) -> common_pb2.Array:
    dtype = array.dtype.newbyteorder("<")
    if dtype not in _FROM_NUMPY:
        raise TypeError(f"dtype {array.dtype} cannot travel as an Array")
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return common_pb2.Array(data=data, shape=list(array.shape), dtype=_FROM_NUMPY[dtype])


def array_from_proto(
    message: common_pb2.Array,
    *,
    dtype: np.dtype | str | None = None,
    ndim: int | None = None,
) -> np.ndarray:
    """Decode an Array, checking it against the expected dtype and rank.

    The result is read-only: it views the message's bytes without copying them.
    """
    if message.dtype not in _TO_NUMPY:
        raise ValueError(f"array has unknown dtype {message.dtype}")
    actual = _TO_NUMPY[message.dtype]
    if dtype is not None and actual != np.dtype(dtype).newbyteorder("<"):
        raise ValueError(f"array has dtype {actual}, expected {np.dtype(dtype)}")
    shape = tuple(int(n) for n in message.shape)
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"array has {len(shape)} dimensions {shape}, expected {ndim}")
    if any(n < 0 for n in shape):
        raise ValueError(f"array has a negative dimension {shape}")
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * actual.itemsize
    if len(message.data) != expected_bytes:
        raise ValueError(
            f"array of shape {shape} and dtype {actual} needs {expected_bytes} bytes, "
            f"got {len(message.data)}"
        )
    return np.frombuffer(message.data, dtype=actual).reshape(shape)
