import numpy as np
import pytest

from scene.common.v1 import common_pb2
from scene_rpc.arrays import array_from_proto, array_to_proto


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "float16", "float32"])
def test_round_trip_keeps_values_shape_and_dtype(dtype):
    array = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    decoded = array_from_proto(array_to_proto(array))
    assert decoded.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(decoded, array)


def test_big_endian_input_travels_as_little_endian():
    array = np.arange(5, dtype=">f4")
    message = array_to_proto(array)
    assert message.data == np.arange(5, dtype="<f4").tobytes()


def test_non_contiguous_input_is_packed():
    array = np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]
    np.testing.assert_array_equal(array_from_proto(array_to_proto(array)), array)


def test_unsupported_dtype_is_refused():
    with pytest.raises(TypeError, match="cannot travel"):
        array_to_proto(np.zeros(3, dtype=np.float64))


def test_byte_count_must_match_shape():
    message = common_pb2.Array(data=b"\0" * 7, shape=[2, 2], dtype=common_pb2.DTYPE_UINT16)
    with pytest.raises(ValueError, match="needs 8 bytes, got 7"):
        array_from_proto(message)


def test_expected_dtype_and_rank_are_checked():
    message = array_to_proto(np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected float32"):
        array_from_proto(message, dtype=np.float32)
    with pytest.raises(ValueError, match="expected 3"):
        array_from_proto(message, ndim=3)


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="unknown dtype"):
        array_from_proto(common_pb2.Array(data=b"", shape=[0], dtype=0))
