"""The sparse row a worker sends: the server's check, and the wire format's sparse payload."""
import os
import struct

import numpy as np
import pytest
import torch

from robustagg.backends.serverless import wire
from robustagg.backends.serverless.wire import HEADER_SIZE, WireError
from robustagg.compression import SparseRow, check_message, compressor

META = dict(run_id="run-1", round=7, worker=3)


def good(k=4, d=10):
    return np.array([0, 3, 5, 9][:k], dtype=np.int32), np.arange(k, dtype=np.float32) - 1.5


def test_valid_messages_pass():
    idx, val = good()
    row = check_message((idx, val), 10, 4, shared=False)
    assert np.array_equal(row.indices, idx) and row.nbytes == 32
    assert row.dense().tolist() == [-1.5, 0, 0, -0.5, 0, 0.5, 0, 0, 0, 1.5]
    shared = check_message(val, 10, 4, shared=True)
    assert shared.indices is None and shared.nbytes == 16
    mask = torch.tensor([1, 2, 3, 4])
    assert shared.dense(mask)[1:5].tolist() == val.tolist()
    nan = val.copy()
    nan[0] = np.nan  # values are the rules' business
    assert check_message((idx, nan), 10, 4, shared=False) is not None


@pytest.mark.parametrize("bad", [
    lambda i, v: (i, v[:3]),                                   # too few values
    lambda i, v: (i[:3], v[:3]),                               # k entries, not fewer
    lambda i, v: (i, v.astype(np.float64)),                    # dtype
    lambda i, v: (i.astype(np.float32), v),                    # float indices
    lambda i, v: (np.array([0, 3, 3, 9], np.int32), v),        # duplicate: counted twice
    lambda i, v: (np.array([0, 5, 3, 9], np.int32), v),        # unsorted
    lambda i, v: (np.array([-1, 3, 5, 9], np.int32), v),       # negative
    lambda i, v: (np.array([0, 3, 5, 10], np.int32), v),       # past d
    lambda i, v: (i, v, v),                                    # not a pair
    lambda i, v: v,                                            # values without indices
    lambda i, v: (list(i), v),                                 # not an array
])
def test_malformed_messages_are_refused(bad):
    assert check_message(bad(*good()), 10, 4, shared=False) is None


def test_shared_message_must_be_k_values():
    _, val = good()
    assert check_message(val[:3], 10, 4, shared=True) is None
    assert check_message(good(), 10, 4, shared=True) is None
    assert check_message(SparseRow(val, None, 11), 10, 4, shared=True) is None  # another d


@pytest.mark.parametrize("d", [1, 9, 4097, 2**31 + 5])
def test_sparse_wire_round_trip(d):
    k = min(d, 3)
    idx = np.array(sorted({0, d // 2, d - 1}))[:k]
    val = np.array([1.0, -np.inf, np.nan][:len(idx)], dtype=np.float32)
    tok = os.urandom(32)
    blob = wire.encode_sparse(idx, val, d, **META, token=tok)
    itemsize = 4 if d < 2**31 else 8
    assert len(blob) == HEADER_SIZE + len(idx) * (itemsize + 4)
    h = wire.read_header(blob)
    assert h.kind == "sparse_grad" and h.shape == (d,) and h.nnz == len(idx)
    i2, v2 = wire.decode_sparse(blob, **META, d=d, nnz=len(idx), token=tok)
    assert np.array_equal(i2, idx) and np.array_equal(v2, val, equal_nan=True)
    assert i2.dtype == (np.int32 if d < 2**31 else np.int64)


def test_sparse_layout_is_indices_then_values():
    blob = wire.encode_sparse(np.array([2, 7]), np.array([1.0, -2.0], np.float32), 9, **META)
    assert blob[HEADER_SIZE:] == struct.pack("<2i2f", 2, 7, 1.0, -2.0)
    assert blob[7] == 5 and struct.unpack_from("<Q", blob, 88)[0] == 2  # kind, entries


def test_sparse_blobs_are_checked():
    blob = wire.encode_sparse(np.array([1, 4]), np.ones(2, np.float32), 9, **META, token=b"t")
    with pytest.raises(WireError, match="shape mismatch"):
        wire.decode_sparse(blob, **META, d=10, token=b"t")
    with pytest.raises(WireError, match="entry count mismatch"):
        wire.decode_sparse(blob, **META, d=9, nnz=3, token=b"t")
    with pytest.raises(WireError, match="digest mismatch"):
        wire.decode_sparse(blob, **META, d=9, token=b"u")
    with pytest.raises(WireError, match="truncated or padded"):
        wire.decode_sparse(blob[:-1], **META, d=9, token=b"t")
    with pytest.raises(WireError, match="kind mismatch"):
        wire.decode(blob[:HEADER_SIZE], kind="grad", **META)
    bad = bytearray(blob)
    struct.pack_into("<ii", bad, HEADER_SIZE, 4, 1)  # unsorted indices, digest recomputed
    head = bytes(bad[:96])
    bad[96:112] = wire._digest(head, bytes(16), bytes(bad[HEADER_SIZE:]), b"t")
    with pytest.raises(WireError, match="strictly increasing"):
        wire.decode_sparse(bytes(bad), **META, d=9, token=b"t")
    over = bytearray(blob)
    struct.pack_into("<Q", over, 88, 10)  # more entries than d
    with pytest.raises(WireError, match="bad sparse_grad"):
        wire.read_header(bytes(over))
    with pytest.raises(ValueError, match="strictly increasing"):
        wire.encode_sparse(np.array([3, 3]), np.ones(2, np.float32), 9, **META)
    with pytest.raises(ValueError, match="encode_sparse"):
        wire.encode(torch.ones(2), kind="sparse_grad", **META)


def test_a_compressed_row_travels_as_it_was_sent():
    g = torch.randn(4097, generator=torch.Generator().manual_seed(0))
    row = compressor("topk", ratio=0.01).compress(g)
    blob = wire.encode_sparse(row.indices, row.values, 4097, **META)
    back = check_message(wire.decode_sparse(blob, **META, d=4097), 4097, row.values.size, False)
    assert torch.equal(back.dense(), row.dense())
