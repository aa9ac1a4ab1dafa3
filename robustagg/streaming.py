"""Streaming over d: run the kernels on a device that cannot hold ``x[n, d]``, one block of
columns at a time.

Every kernel of :mod:`robustagg.kernels` is a sum over columns (the distances) or works column by
column (median, trimmed mean), so ``x`` can live in host memory and pass through the device in
column chunks ``x[:, c0:c1]``:

- :func:`column_chunks` yields ``(c0, c1, chunk)`` with ``chunk`` a contiguous ``[n, c1 - c0]``
  copy of ``x[:, c0:c1]`` on the target device. Host → CUDA copies are double-buffered: two
  pinned host staging buffers and two device buffers, allocated once and reused, the copy of
  chunk i + 1 running on a side stream while the current stream computes on chunk i, ordered
  by CUDA events. A pinned ``x`` skips the staging copy (each row's slice is contiguous and
  pinned, so it goes straight to the device).
- :func:`pairwise_sq_distances` (the float64 sum of the chunks' distance matrices),
  :func:`coordinate_median` and :func:`trimmed_mean` (each chunk's result written into the output
  slice) return on ``x``'s device with the contract of :mod:`robustagg.kernels`.
- :func:`check_settings` checks the user's ``device`` / ``chunk_columns`` settings, and
  :func:`target_device` says whether to stream at all.

The functions take float32/float64 input already checked by the caller (as the kernels do).
"""
from __future__ import annotations

from typing import Iterator

import torch

from . import kernels

# A chunk of at most this many bytes already amortises the per-chunk costs (a kernel launch, a
# copy call per row, an n x n result): a 256 MiB host-to-device copy takes milliseconds.
MAX_CHUNK_BYTES = 256 * 2**20


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (b.index if b.index is not None
                                                                  else current)


def check_settings(device, chunk_columns, rule: str) -> torch.device | None:
    """Check the user's streaming settings; return ``device`` as a ``torch.device`` (a CUDA one
    with its index), or None.

    ``device``: None, ``"cpu"``, ``"cuda"``, ``"cuda:i"`` or a ``torch.device``;
    ``chunk_columns``: None or a positive int. Raises ``ValueError``/``TypeError`` naming
    ``rule`` for a bad device, a CUDA device where torch sees none, or a bad ``chunk_columns``.
    """
    if chunk_columns is not None and (isinstance(chunk_columns, bool)
                                      or not isinstance(chunk_columns, int)):
        raise TypeError(f"{rule}: chunk_columns must be an int or None, got {chunk_columns!r}")
    if chunk_columns is not None and chunk_columns < 1:
        raise ValueError(f"{rule}: chunk_columns must be >= 1, got chunk_columns={chunk_columns}")
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{rule}: device must be 'cpu', 'cuda', 'cuda:<index>' or a "
                         f"torch.device, got device={device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{rule}: device={device!r} asks for CUDA, but torch sees no CUDA "
                             f"device (torch {torch.__version__}, CUDA build: "
                             f"{torch.version.cuda or 'no'})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{rule}: device={device!r} does not exist: torch sees "
                             f"{torch.cuda.device_count()} CUDA device(s)")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ValueError(f"{rule}: device must be a CPU or CUDA device, got device={device!r}")
    return dev


def target_device(x: torch.Tensor, device, chunk_columns, rule: str) -> torch.device | None:
    """The device to stream ``x[n, d]`` through, or None to compute as usual (no streaming).

    Streaming happens when ``device`` is not ``x``'s device, or when ``chunk_columns`` is given
    (then on ``device``, or on ``x``'s device when ``device`` is None). Checks the settings first
    (:func:`check_settings`).
    """
    dev = check_settings(device, chunk_columns, rule)
    if dev is None:
        return None if chunk_columns is None else x.device
    if chunk_columns is None and _same_device(dev, x.device):
        return None
    return dev


def default_chunk_columns(n: int, d: int, element_size: int, device: torch.device) -> int:
    """Columns per chunk for ``x[n, d]`` with ``element_size``-byte values on ``device``: a
    chunk of at most :data:`MAX_CHUNK_BYTES` and, on CUDA, at most an eighth of the free device
    memory (so the two buffers take at most a quarter, leaving room for the torch path's float64
    and sort copies of a chunk where no native kernel serves it); at least one column, at most d.
    """
    budget = MAX_CHUNK_BYTES
    if device.type == "cuda":
        budget = min(budget, torch.cuda.mem_get_info(device)[0] // 8)
    return max(1, min(d, budget // (n * element_size)))


def column_chunks(x: torch.Tensor, device: torch.device,
                  chunk_columns: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(c0, c1, chunk)`` for consecutive column ranges covering ``x[n, d]``, ``chunk`` a
    contiguous ``[n, c1 - c0]`` copy of ``x[:, c0:c1]`` on ``device`` (or ``x`` itself, as it is,
    when one chunk on ``x``'s device covers it all).

    ``chunk_columns`` columns per chunk (the last may be narrower); None:
    :func:`default_chunk_columns`. A CUDA chunk is valid on the current stream until the next
    chunk is requested: its buffer is then refilled (work queued on the current stream before
    that is waited for).
    """
    n, d = x.shape
    w = chunk_columns or default_chunk_columns(n, d, x.element_size(), device)
    w = min(w, d)
    if device.type == "cuda" and x.device.type == "cpu":
        yield from _host_to_cuda(x, device, w)
    elif w == d and _same_device(device, x.device):
        yield 0, d, x
    else:  # CPU chunks (tests exercise the chunk logic here), or any other pair of devices
        for c0 in range(0, d, w):
            c1 = min(c0 + w, d)
            yield c0, c1, x[:, c0:c1].to(device).contiguous()


def _host_to_cuda(x: torch.Tensor, device: torch.device, w: int):
    """:func:`column_chunks` from host memory to a CUDA device, double-buffered (module doc)."""
    n, d = x.shape
    bounds = [(c0, min(c0 + w, d)) for c0 in range(0, d, w)]
    # rows of a pinned, row-major x are contiguous pinned slices: they copy straight to the
    # device, with no staging copy on the host
    direct = x.is_pinned() and x.stride(1) == 1
    with torch.cuda.device(device):
        compute = torch.cuda.current_stream()
        side = torch.cuda.Stream()
        # Flat buffers: the first n*(c1-c0) elements viewed as [n, c1-c0] are contiguous for
        # every chunk width, so the narrower last chunk reuses them too.
        dev_bufs = [torch.empty(n * w, dtype=x.dtype, device=device) for _ in range(2)]
        for buf in dev_bufs:  # freed early (an error in the caller's loop), a buffer still
            buf.record_stream(side)  # waits for its side-stream copy before reuse
        host_bufs = [] if direct else [torch.empty(n * w, dtype=x.dtype, pin_memory=True)
                                       for _ in range(2)]
        copied = [torch.cuda.Event() for _ in range(2)]    # the copy into buffer b is done
        consumed = [torch.cuda.Event() for _ in range(2)]  # the compute on buffer b is done

        def start_copy(i: int):
            c0, c1 = bounds[i]
            b = i % 2
            dst = dev_bufs[b][: n * (c1 - c0)].view(n, c1 - c0)
            if not direct:
                copied[b].synchronize()  # the staging buffer may still feed chunk i - 2's copy
                src = host_bufs[b][: n * (c1 - c0)].view(n, c1 - c0)
                src.copy_(x[:, c0:c1])  # strided slab -> contiguous pinned, on the host
            with torch.cuda.stream(side):
                side.wait_event(consumed[b])  # chunk i - 2's compute has finished with dst
                if direct:
                    for r in range(n):
                        dst[r].copy_(x[r, c0:c1], non_blocking=True)
                else:
                    dst.copy_(src, non_blocking=True)
                copied[b].record(side)
            return dst

        for b in range(2):  # nothing to wait for yet: recorded so that the first waits are valid
            consumed[b].record(compute)
            copied[b].record(side)
        nxt = start_copy(0)
        for i, (c0, c1) in enumerate(bounds):
            chunk = nxt
            if i + 1 < len(bounds):
                nxt = start_copy(i + 1)  # overlaps the compute on chunk i
            compute.wait_event(copied[i % 2])
            yield c0, c1, chunk
            consumed[i % 2].record(compute)


def pairwise_sq_distances(x: torch.Tensor, device: torch.device,
                          chunk_columns: int | None = None) -> torch.Tensor:
    """:func:`robustagg.kernels.pairwise_sq_distances` of ``x[n, d]`` computed on ``device`` in
    column chunks: the float64 sum of the chunks' ``[n, n]`` matrices, on ``x``'s device.

    The contract holds: each chunk's diagonal is exactly zero, and a pair that is +inf in any
    chunk (a NaN/±Inf in one of its rows there) stays +inf, since distances are never negative.
    """
    total = None
    for _, _, chunk in column_chunks(x, device, chunk_columns):
        part = kernels.pairwise_sq_distances(chunk)
        total = part if total is None else total.add_(part)
    return total.to(x.device)


def _per_column(x: torch.Tensor, device: torch.device, chunk_columns: int | None, kernel):
    out = torch.empty(x.shape[1], dtype=x.dtype, device=x.device)
    for c0, c1, chunk in column_chunks(x, device, chunk_columns):
        out[c0:c1] = kernel(chunk)
    return out


def coordinate_median(x: torch.Tensor, device: torch.device,
                      chunk_columns: int | None = None) -> torch.Tensor:
    """:func:`robustagg.kernels.coordinate_median` of ``x[n, d]`` computed on ``device`` in
    column chunks, each written into its slice of the ``[d]`` result on ``x``'s device
    (bit-identical to the unchunked kernel on ``device``: columns are independent)."""
    return _per_column(x, device, chunk_columns, kernels.coordinate_median)


def trimmed_mean(x: torch.Tensor, f: int, device: torch.device,
                 chunk_columns: int | None = None) -> torch.Tensor:
    """:func:`robustagg.kernels.trimmed_mean` of ``x[n, d]`` computed on ``device`` in column
    chunks, each written into its slice of the ``[d]`` result on ``x``'s device."""
    return _per_column(x, device, chunk_columns, lambda chunk: kernels.trimmed_mean(chunk, f))
