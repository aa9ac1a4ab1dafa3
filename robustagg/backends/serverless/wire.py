"""The wire format of tensors crossing the store: a fixed 128-byte header, then raw little-endian data.

Nothing read from a store is ever unpickled: a blob is parsed with :mod:`struct` and
``numpy.frombuffer`` only, and every header field is checked against what the reader expects
before a byte of the payload is used.

Layout (little-endian, 128 bytes, so the payload starts 8-byte aligned)::

    offset size field
    0      4    magic  b"RAGW"
    4      2    version (uint16, = 3)
    6      1    dtype code (see DTYPES): of the values
    7      1    kind code (see KINDS): params, grad, shard_x, shard_y, sparse_grad
    8      32   run id, ASCII [A-Za-z0-9_-], NUL padded
    40     8    round (uint64)
    48     4    worker id (int32; -1 for the server)
    52     1    ndim (0..4)
    53     3    reserved, zero
    56     32   dims (4 x uint64; unused dims are 0)
    88     8    element count (uint64) = prod(dims); for sparse_grad, the entries nnz <= dims[0]
    96     16   digest: BLAKE2b-128 over header[0:96] + header[112:128] + payload, keyed with
                the writer's token when the reader holds one (authentication), else unkeyed
                (integrity only)
    112    16   reserved, zero (covered by the digest, and checked to be zero)
    128    ...  payload: count * itemsize bytes; for sparse_grad, nnz indices (int32 when
                dims[0] < 2^31, else int64; strictly increasing, below dims[0]), then nnz values

Every header byte but the digest itself is covered by the digest. A reader gives the run id,
round, worker, kind and (optionally) dtype and shape it expects; :func:`decode` raises
:class:`WireError` naming the first field that differs.

A sparse gradient (kind ``sparse_grad``, :func:`encode_sparse` / :func:`decode_sparse`) is a
1-D tensor of ``dims[0] = d`` entries of which ``count = nnz`` are given: the header declares
the layout by its kind, the dense length by its dims and the entries by its count, so the
reader knows the payload's exact length before reading it.

Versions: 2 added bytes 112-128 to the digest (and checks them); 3 adds the ``sparse_grad``
kind. A reader accepts its own version only: a server and its workers are deployed together.
"""
from __future__ import annotations

import hashlib
import math
import re
import struct
from dataclasses import dataclass

import numpy as np
import torch

MAGIC = b"RAGW"
VERSION = 3
HEADER_SIZE = 128
MAX_NDIM = 4
_HEAD = struct.Struct("<4sHBB32sQiB3x4QQ")  # fields up to the digest: 96 bytes
_DIGEST_SIZE = 16
_RESERVED = slice(_HEAD.size + _DIGEST_SIZE, HEADER_SIZE)  # bytes 112-128
assert _HEAD.size == 96

# code -> (name, little-endian numpy dtype, torch dtype). bfloat16 travels as its raw 16-bit pattern.
DTYPES = {
    1: ("float32", np.dtype("<f4"), torch.float32),
    2: ("float64", np.dtype("<f8"), torch.float64),
    3: ("float16", np.dtype("<f2"), torch.float16),
    4: ("bfloat16", np.dtype("<u2"), torch.bfloat16),
    5: ("int64", np.dtype("<i8"), torch.int64),
    6: ("int32", np.dtype("<i4"), torch.int32),
    7: ("uint8", np.dtype("u1"), torch.uint8),
}
_CODE_OF_TORCH = {t: c for c, (_, _, t) in DTYPES.items()}
KINDS = {1: "params", 2: "grad", 3: "shard_x", 4: "shard_y", 5: "sparse_grad"}
SPARSE = "sparse_grad"
_CODE_OF_KIND = {k: c for c, k in KINDS.items()}
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")


class WireError(ValueError):
    """A blob that does not match what the reader expects (treated as an omission by the server)."""


@dataclass(frozen=True)
class Header:
    dtype: torch.dtype
    kind: str
    run_id: str
    round: int
    worker: int
    shape: tuple[int, ...]
    nnz: int | None = None  # the entries given, for a sparse_grad (else None)


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is 1-32 characters of [A-Za-z0-9_-], else raise ValueError."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(f"run_id must be 1-32 characters of [A-Za-z0-9_-], got {run_id!r}")
    return run_id


def _digest(head, reserved, payload, token: bytes | None) -> bytes:
    h = hashlib.blake2b(digest_size=_DIGEST_SIZE, key=token or b"")
    h.update(head)
    h.update(reserved)
    h.update(payload)
    return h.digest()


def _bytes_view(blob):
    """``blob`` as a flat byte view; anything that is not a bytes-like object is a WireError."""
    try:
        return memoryview(blob).cast("B")
    except TypeError:
        raise WireError(f"a blob must be bytes-like, got {type(blob).__name__}") from None


def encode(tensor, *, kind: str, run_id: str, round: int, worker: int,
           token: bytes | None = None) -> bytes:
    """Serialize a tensor (torch or numpy, at most 4-D) into one blob: header + raw little-endian data.

    ``token``: the writer's secret (at most 64 bytes); the digest is then keyed, so a reader holding
    the same token knows the blob came from its holder.
    """
    if kind not in _CODE_OF_KIND:
        raise ValueError(f"kind must be one of {sorted(_CODE_OF_KIND)}, got {kind!r}")
    if kind == SPARSE:
        raise ValueError("a sparse_grad is written by encode_sparse")
    t = torch.as_tensor(tensor).detach().cpu()
    if t.dtype not in _CODE_OF_TORCH:
        raise ValueError(f"dtype {t.dtype} is not in the wire format (supported: "
                         f"{[n for n, _, _ in DTYPES.values()]})")
    if t.dim() > MAX_NDIM:
        raise ValueError(f"the wire format carries at most {MAX_NDIM} dims, got shape {tuple(t.shape)}")
    code = _CODE_OF_TORCH[t.dtype]
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    arr = t.numpy().astype(DTYPES[code][1], copy=False)  # byte-swaps only on big-endian hosts
    return _pack(code, kind, run_id, round, worker, tuple(t.shape), t.numel(), (arr,), token)


def _pack(code, kind, run_id, round, worker, shape, count, arrays, token) -> bytes:
    """Header (with its digest) and the ``arrays``' bytes one after the other."""
    check_run_id(run_id)
    if not 0 <= round < 2**64 or not -2**31 <= worker < 2**31:
        raise ValueError(f"round must be in [0, 2^64) and worker an int32, got round={round}, worker={worker}")
    dims = list(shape) + [0] * (MAX_NDIM - len(shape))
    head = _HEAD.pack(MAGIC, VERSION, code, _CODE_OF_KIND[kind], run_id.encode("ascii"), round,
                      worker, len(shape), *dims, count)
    payload = b"".join(memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
                       for a in arrays)
    reserved = bytes(HEADER_SIZE - _RESERVED.start)
    return b"".join((head, _digest(head, reserved, payload, token), reserved, payload))


def sparse_index_dtype(d: int) -> np.dtype:
    """The index type of a sparse_grad of length d: int32 below 2^31, else int64 (little-endian)."""
    return np.dtype("<i4") if d < 2**31 else np.dtype("<i8")


def encode_sparse(indices, values, d: int, *, run_id: str, round: int, worker: int,
                  token: bytes | None = None) -> bytes:
    """Serialize ``nnz`` entries of a length-``d`` float32 vector: ``indices`` strictly
    increasing in ``[0, d)``, ``values`` float32, both ``[nnz]`` (numpy or torch)."""
    idx = np.asarray(indices)
    val = np.asarray(values)
    if not 0 < d < 2**63:
        raise ValueError(f"d must be in [1, 2^63), got d={d}")
    if idx.ndim != 1 or val.shape != idx.shape or val.dtype != np.float32 or \
            idx.dtype.kind not in "iu":
        raise ValueError(f"a sparse_grad needs integer indices and float32 values of one 1-D "
                         f"shape, got {idx.dtype} {idx.shape} and {val.dtype} {val.shape}")
    _check_indices(idx, d, ValueError)
    return _pack(1, SPARSE, run_id, round, worker, (d,), idx.size,
                 (idx.astype(sparse_index_dtype(d), copy=False), val.astype("<f4", copy=False)),
                 token)


def _check_indices(idx: np.ndarray, d: int, error) -> None:
    if idx.size and (idx[0] < 0 or idx[-1] >= d or (idx.size > 1 and not (np.diff(idx) > 0).all())):
        raise error(f"sparse_grad indices must be strictly increasing in [0, {d})")


def digest_of(blob) -> str:
    """The digest field of a blob as hex (no check). A reader told this value by a trusted channel
    (an invocation event) knows the blob is the one the server wrote before decoding it."""
    blob = _bytes_view(blob)
    if len(blob) < HEADER_SIZE:
        raise WireError(f"blob of {len(blob)} bytes is shorter than the {HEADER_SIZE}-byte header")
    return bytes(blob[_HEAD.size:_HEAD.size + _DIGEST_SIZE]).hex()


def read_header(blob) -> Header:
    """Parse and check the header alone (magic, version, codes, dims, reserved bytes): raises
    WireError."""
    blob = _bytes_view(blob)
    if len(blob) < HEADER_SIZE:
        raise WireError(f"blob of {len(blob)} bytes is shorter than the {HEADER_SIZE}-byte header")
    (magic, version, dcode, kcode, rid, rnd, worker, ndim, *rest) = _HEAD.unpack_from(blob)
    dims, count = rest[:MAX_NDIM], rest[MAX_NDIM]
    if magic != MAGIC:
        raise WireError(f"bad magic {bytes(magic)!r} (expected {MAGIC!r}): not a robustagg blob")
    if version != VERSION:
        raise WireError(f"wire format version {version} is not supported (expected {VERSION})")
    if dcode not in DTYPES:
        raise WireError(f"unknown dtype code {dcode}")
    if kcode not in KINDS:
        raise WireError(f"unknown kind code {kcode}")
    if ndim > MAX_NDIM or any(dims[ndim:]):
        raise WireError(f"bad shape: ndim={ndim}, dims={dims}")
    for lo, hi in ((53, 56), (_RESERVED.start, HEADER_SIZE)):
        if any(blob[lo:hi]):
            raise WireError(f"reserved header bytes {lo}-{hi} are not zero")
    shape = tuple(dims[:ndim])
    if any(x >= 2**63 for x in shape):  # no tensor has such a dim, even beside a 0
        raise WireError(f"bad shape {shape}: a dim is 2^63 or more")
    sparse = KINDS[kcode] == SPARSE
    if sparse and (ndim != 1 or DTYPES[dcode][0] != "float32" or count > shape[0]):
        raise WireError(f"bad sparse_grad: shape {shape}, dtype {DTYPES[dcode][0]}, {count} "
                        f"entries (needs 1-D float32 with at most dims[0] entries)")
    if not sparse and math.prod(shape) != count:  # Python ints: no overflow, whatever the dims say
        raise WireError(f"element count {count} does not match shape {shape}")
    try:
        run_id = check_run_id(bytes(rid).rstrip(b"\0").decode("ascii"))
    except (UnicodeDecodeError, ValueError) as e:
        raise WireError(f"bad run id in header: {e}") from None
    return Header(DTYPES[dcode][2], KINDS[kcode], run_id, rnd, worker, shape,
                  count if sparse else None)


def decode(blob, *, kind: str, run_id: str, round: int, worker: int,
           dtype: torch.dtype | None = None, shape: tuple[int, ...] | None = None,
           token: bytes | None = None) -> torch.Tensor:
    """Check a blob against everything the reader expects and return its tensor (a fresh copy).

    Raises WireError naming the first mismatch: header fields, dtype, shape, the exact byte length,
    and the digest (keyed with ``token`` when given: a blob written without that token fails).
    """
    if kind == SPARSE:
        raise ValueError("a sparse_grad is read by decode_sparse")
    blob, h, n, np_dtype = _checked(blob, kind, run_id, round, worker, dtype, shape, token)
    arr = np.frombuffer(blob[HEADER_SIZE:], dtype=np_dtype, count=n).astype(np_dtype.newbyteorder("="))
    t = torch.from_numpy(arr).reshape(h.shape)
    return t.view(torch.bfloat16) if h.dtype == torch.bfloat16 else t


def decode_sparse(blob, *, run_id: str, round: int, worker: int, d: int, nnz: int | None = None,
                  token: bytes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Check a sparse_grad blob as :func:`decode` does (and its length ``d``, its entry count
    ``nnz`` when given, its indices strictly increasing in ``[0, d)``) and return fresh
    ``(indices, values)`` numpy arrays (native int32/int64 and float32)."""
    blob, h, n, _ = _checked(blob, SPARSE, run_id, round, worker, torch.float32, (d,), token)
    if nnz is not None and n != nnz:
        raise WireError(f"entry count mismatch: blob has {n}, expected {nnz}")
    it = sparse_index_dtype(d)
    payload = blob[HEADER_SIZE:]
    idx = np.frombuffer(payload, dtype=it, count=n).astype(it.newbyteorder("="))
    val = np.frombuffer(payload, dtype="<f4", count=n, offset=n * it.itemsize).astype(np.float32)
    _check_indices(idx, d, WireError)
    return idx, val


def _checked(blob, kind, run_id, round, worker, dtype, shape, token):
    """The blob as a byte view, its header, entry count and value dtype, after every check
    but the payload's meaning: header fields, dtype, shape, exact length, digest."""
    blob = _bytes_view(blob)
    h = read_header(blob)
    expected = {"kind": kind, "run_id": run_id, "round": round, "worker": worker}
    for field, want in expected.items():
        got = getattr(h, field)
        if got != want:
            raise WireError(f"{field} mismatch: blob has {got!r}, expected {want!r}")
    if dtype is not None and h.dtype != dtype:
        raise WireError(f"dtype mismatch: blob has {h.dtype}, expected {dtype}")
    if shape is not None and h.shape != tuple(shape):
        raise WireError(f"shape mismatch: blob has {h.shape}, expected {tuple(shape)}")
    code = _CODE_OF_TORCH[h.dtype]
    np_dtype = DTYPES[code][1]
    n = math.prod(h.shape) if h.nnz is None else h.nnz
    itemsize = np_dtype.itemsize + (0 if h.nnz is None else sparse_index_dtype(h.shape[0]).itemsize)
    want = n * itemsize
    if len(blob) - HEADER_SIZE != want:
        raise WireError(f"payload is {len(blob) - HEADER_SIZE} bytes, but the header's shape "
                        f"{h.shape} of {h.dtype}{'' if h.nnz is None else f' ({n} entries)'} "
                        f"needs {want} (truncated or padded)")
    payload = blob[HEADER_SIZE:]
    if _digest(blob[:_HEAD.size], blob[_RESERVED], payload, token) != \
            bytes(blob[_HEAD.size:_HEAD.size + _DIGEST_SIZE]):
        raise WireError("digest mismatch: corrupted blob, or not written by the holder of this "
                        "worker's token")
    return blob, h, n, np_dtype
