"""The wire format: round trips, and every bad blob is refused before its payload is used."""
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from robustagg.backends.serverless import wire
from robustagg.backends.serverless.wire import HEADER_SIZE, WireError, decode, encode

META = dict(kind="grad", run_id="run-1", round=7, worker=3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16,
                                   torch.int64, torch.int32, torch.uint8])
@pytest.mark.parametrize("shape", [(), (0,), (0, 0), (3, 0, 2), (5,), (3, 4), (2, 1, 3, 2)])
def test_round_trip(dtype, shape):
    g = torch.Generator().manual_seed(0)
    t = (torch.randn(shape, generator=g) * 50).to(dtype)
    blob = encode(t, **META)
    assert len(blob) == HEADER_SIZE + t.numel() * t.element_size()
    out = decode(blob, **META, dtype=dtype, shape=shape)
    assert out.dtype == dtype and tuple(out.shape) == shape
    assert torch.equal(out, t)


def test_layout_is_little_endian_raw_float32():
    blob = encode(torch.tensor([1.0, -2.5]), **META)
    assert blob[:4] == b"RAGW"
    assert blob[HEADER_SIZE:] == struct.pack("<2f", 1.0, -2.5)  # a reader in any language can parse it
    assert struct.unpack_from("<Q", blob, 40)[0] == 7 and struct.unpack_from("<i", blob, 48)[0] == 3


def test_numpy_input_and_copy_is_writable():
    a = np.arange(6, dtype=np.float32)
    out = decode(encode(a, **META), **META)
    out += 1  # a fresh writable tensor, not a view of the blob
    assert torch.equal(out, torch.arange(6, dtype=torch.float32) + 1)


def test_nonfinite_values_travel_unchanged():
    # NaN/Inf from a Byzantine worker is the rules' business, not a wire error
    t = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0])
    out = decode(encode(t, **META), **META)
    assert torch.equal(torch.isnan(out), torch.isnan(t)) and out[1:].tolist() == t[1:].tolist()


@pytest.mark.parametrize("field,value", [("run_id", "run-2"), ("round", 8), ("worker", 4),
                                         ("kind", "params")])
def test_header_mismatch(field, value):
    blob = encode(torch.ones(4), **META)
    with pytest.raises(WireError, match=f"{field} mismatch"):
        decode(blob, **{**META, field: value})


def test_dtype_and_shape_mismatch():
    blob = encode(torch.ones(2, 3), **META)
    with pytest.raises(WireError, match="dtype mismatch"):
        decode(blob, **META, dtype=torch.float64)
    with pytest.raises(WireError, match="shape mismatch"):
        decode(blob, **META, shape=(6,))


def test_truncated_and_padded_blobs():
    blob = encode(torch.ones(10), **META)
    with pytest.raises(WireError, match="truncated or padded"):
        decode(blob[:-4], **META)
    with pytest.raises(WireError, match="truncated or padded"):
        decode(blob + b"\0\0\0\0", **META)
    with pytest.raises(WireError, match="shorter than"):
        decode(blob[:50], **META)
    with pytest.raises(WireError, match="shorter than"):
        decode(b"", **META)


def test_wrong_count_in_header():
    blob = bytearray(encode(torch.ones(10), **META))
    struct.pack_into("<Q", blob, 88, 11)  # count no longer matches the dims
    with pytest.raises(WireError, match="does not match shape"):
        decode(bytes(blob), **META)
    blob = bytearray(encode(torch.ones(10), **META))
    struct.pack_into("<Q", blob, 56, 11)  # dims and count say 11 elements, the payload holds 10
    struct.pack_into("<Q", blob, 88, 11)
    with pytest.raises(WireError, match="truncated or padded"):
        decode(bytes(blob), **META)


def test_flipped_payload_bit_fails_digest():
    blob = bytearray(encode(torch.ones(10), **META))
    blob[HEADER_SIZE + 5] ^= 1
    with pytest.raises(WireError, match="digest mismatch"):
        decode(bytes(blob), **META)


def test_forged_header_fields_fail_digest():
    # rewriting the worker id (e.g. to pass as another worker) without recomputing the digest
    blob = bytearray(encode(torch.ones(10), **META))
    struct.pack_into("<i", blob, 48, 4)
    with pytest.raises(WireError, match="digest mismatch"):
        decode(bytes(blob), **{**META, "worker": 4})


def test_keyed_digest_authenticates_the_writer():
    mine, other = os.urandom(32), os.urandom(32)
    t = torch.ones(10)
    assert torch.equal(decode(encode(t, **META, token=mine), **META, token=mine), t)
    # another worker (holding only its own token) forging this worker's blob is rejected
    with pytest.raises(WireError, match="digest mismatch"):
        decode(encode(t, **META, token=other), **META, token=mine)
    with pytest.raises(WireError, match="digest mismatch"):
        decode(encode(t, **META), **META, token=mine)


class _Boom:
    executed = []

    def __reduce__(self):
        return (_Boom.executed.append, ("pwned",))


def test_pickle_payload_is_never_executed():
    payload = pickle.dumps(_Boom())
    for blob in (payload, payload.ljust(HEADER_SIZE + 40, b"\0"), b"RAGW" + payload):
        with pytest.raises(WireError):
            decode(blob, **META)
    # even a valid header followed by a pickle is only ever read as raw floats
    n = (len(payload) + 3) // 4
    good = encode(torch.zeros(n), **META)
    with pytest.raises(WireError):
        decode(good[:HEADER_SIZE] + payload.ljust(4 * n, b"\0"), **META)
    assert _Boom.executed == []


def test_bad_codes_and_magic():
    blob = bytearray(encode(torch.ones(2), **META))
    for off, val, msg in [(0, b"XXXX", "bad magic"), (4, b"\x09\x00", "version"),
                          (6, b"\x63", "dtype code"), (7, b"\x63", "kind code"),
                          (52, b"\x05", "bad shape"), (8, b"r\xff", "run id")]:
        bad = bytearray(blob)
        bad[off:off + len(val)] = val
        with pytest.raises(WireError, match=msg):
            decode(bytes(bad), **META)


def test_encode_rejects_bad_arguments():
    with pytest.raises(ValueError, match="run_id"):
        encode(torch.ones(2), **{**META, "run_id": "a b"})
    with pytest.raises(ValueError, match="kind"):
        encode(torch.ones(2), **{**META, "kind": "junk"})
    with pytest.raises(ValueError, match="at most 4 dims"):
        encode(torch.ones(1, 1, 1, 1, 1), **META)
    with pytest.raises(ValueError, match="not in the wire format"):
        encode(torch.ones(2, dtype=torch.complex64), **META)


def test_read_header():
    h = wire.read_header(encode(torch.ones(2, 3, dtype=torch.float64), **META))
    assert h == wire.Header(torch.float64, "grad", "run-1", 7, 3, (2, 3))


def _bit_flips(lo, hi):
    for off in range(lo, hi):
        for bit in range(8):
            yield off, bit


def test_reserved_header_bytes_are_covered_and_zero():
    """Every single-bit flip in the reserved bytes (53-56 and 112-128) is refused, keyed or not."""
    tok = os.urandom(32)
    for token in (None, tok):
        blob = encode(torch.ones(3), **META, token=token)
        flips = list(_bit_flips(53, 56)) + list(_bit_flips(112, 128))
        assert len(flips) == 24 + 128
        for off, bit in flips:
            bad = bytearray(blob)
            bad[off] ^= 1 << bit
            with pytest.raises(WireError, match="reserved header bytes"):
                decode(bytes(bad), **META, token=token)


def test_reserved_bytes_are_in_the_digest():
    """Even if the zero check were skipped, the digest covers bytes 112-128: the digest of the
    same header and payload with different reserved bytes differs."""
    blob = encode(torch.ones(3), **META)
    payload = memoryview(blob)[HEADER_SIZE:]
    a = wire._digest(blob[:96], bytes(16), payload, None)
    b = wire._digest(blob[:96], b"\x01" + bytes(15), payload, None)
    assert a == blob[96:112] and a != b


def test_overflowing_dims_give_a_clear_message():
    blob = bytearray(encode(torch.ones(10), **META))
    # shape (2^61, 4): 2^63 elements, the count field agrees; 2^65 bytes of float32 needed
    struct.pack_into("<B", blob, 52, 2)
    struct.pack_into("<4Q", blob, 56, 2**61, 4, 0, 0)
    struct.pack_into("<Q", blob, 88, 2**63)
    with pytest.raises(WireError) as e:
        decode(bytes(blob), **META)
    msg = str(e.value)
    assert "needs 36893488147419103232" in msg and "payload is 40 bytes" in msg and "-" not in \
        msg.replace("truncated or padded", "")
    # dims whose product exceeds the 64-bit count field cannot match it
    struct.pack_into("<4Q", blob, 56, 2**62, 2**62, 0, 0)
    with pytest.raises(WireError, match=r"element count 9223372036854775808 does not match shape "
                                        r"\(4611686018427387904, 4611686018427387904\)"):
        decode(bytes(blob), **META)


def test_huge_dim_beside_a_zero_is_refused():
    """Shape (0, 2^64 - 1) has 0 elements, so count and length agree; no tensor has that shape
    (a fuzzed header once reached torch's reshape with it)."""
    blob = bytearray(encode(torch.ones(0), **META))
    struct.pack_into("<B", blob, 52, 2)
    struct.pack_into("<4Q", blob, 56, 0, 2**64 - 1, 0, 0)
    with pytest.raises(WireError, match=r"bad shape \(0, 18446744073709551615\): a dim is 2\^63"):
        decode(bytes(blob), **META)


@pytest.mark.parametrize("blob", [None, "RAGW", 12, 1.5, [1, 2], {"a": 1}])
def test_non_bytes_blob_is_a_wire_error(blob):
    with pytest.raises(WireError, match="a blob must be bytes-like"):
        decode(blob, **META)
    with pytest.raises(WireError, match="a blob must be bytes-like"):
        wire.read_header(blob)
    with pytest.raises(WireError, match="a blob must be bytes-like"):
        wire.digest_of(blob)


def test_version_1_blobs_are_refused_by_name():
    blob = bytearray(encode(torch.ones(2), **META))
    struct.pack_into("<H", blob, 4, 1)
    with pytest.raises(WireError, match="wire format version 1 is not supported"):
        decode(bytes(blob), **META)
