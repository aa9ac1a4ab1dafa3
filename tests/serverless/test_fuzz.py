"""Fuzzing (hypothesis) of what crosses the Lambda backend's boundaries: blobs read from a store
and invocation events. The contract: a blob either decodes to exactly what was written or raises
WireError; an event either does its work or gets {"ok": false, ...}, never an exception.

The default suite runs a few hundred derandomized examples per target (a few seconds); ``-m slow``
runs the same targets on 20,000 random examples each."""
import contextlib
import copy
import json
import struct

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from robustagg.backends.serverless import handler as H  # noqa: E402
from robustagg.backends.serverless import wire  # noqa: E402
from robustagg.backends.serverless.stores import MemoryStore  # noqa: E402
from robustagg.run.data import load_dataset  # noqa: E402
from tests.serverless.test_handler import setup  # noqa: E402

META = dict(kind="grad", run_id="fuzz", round=5, worker=2)
TOKEN = bytes(range(32))
_QUICK = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
_LONG = settings(max_examples=20_000, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])
_RESULT_TYPES = {"BadEvent", "BadSettings", "BadConfig", "MissingBlob", "WireError", "StoreError"}


def _both(strategy, check):
    """The check as a quick default test and a long slow one."""
    quick = _QUICK(given(strategy)(check))
    long = pytest.mark.slow(_LONG(given(strategy)(check)))
    return quick, long


# ---- the wire decoder ----

_tensors = st.builds(
    lambda shape, dtype, seed: (torch.randn(shape, generator=torch.Generator().manual_seed(seed))
                                * 100).to(dtype),
    st.lists(st.integers(0, 5), max_size=4).map(tuple),
    st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                     torch.int32, torch.uint8]),
    st.integers(0, 2**31))

_edits = st.lists(st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("grow"), st.integers(1, 64), st.integers(0, 255)),
    st.tuples(st.just("field"), st.sampled_from([4, 6, 7, 40, 48, 52, 56, 64, 88]),
              st.integers(0, 2**64 - 1))), min_size=1, max_size=4)


def _apply(blob: bytes, edits) -> bytes:
    b = bytearray(blob)
    for op, a, v in edits:
        if op == "flip" and b:
            b[a % len(b)] ^= v
        elif op == "cut":
            del b[a % (len(b) + 1):]
        elif op == "grow":
            b += bytes([v]) * a
        elif op == "field" and len(b) >= a + 8:  # any value in a header field (digest unchanged)
            struct.pack_into("<Q", b, a, v)
    return bytes(b)


def _check_mutated_blob(case):
    t, edits, keyed = case
    token = TOKEN if keyed else None
    blob = wire.encode(t, **META, token=token)
    bad = _apply(blob, edits)
    try:
        out = wire.decode(bad, **META, token=token)
    except wire.WireError:
        assert bad != blob  # the untouched blob always decodes
        return
    # accepted: only the blob as written (the digest covers every other byte), decoded to the
    # tensor written (same dtype, shape and bytes: it encodes to the same blob)
    assert bad == blob and wire.encode(out, **META, token=token) == blob


test_mutated_blobs, test_mutated_blobs_long = _both(
    st.tuples(_tensors, _edits, st.booleans()), _check_mutated_blob)


def _check_forged_header(case):
    """A forger who recomputes the unkeyed digest over any header fields and payload: decode
    either returns a tensor consistent with the header, or raises WireError (never a numpy or
    struct error, never a wrong-sized tensor)."""
    fields, payload, reserved = case
    dcode, kcode, ndim, dims, count = fields
    head = wire._HEAD.pack(wire.MAGIC, wire.VERSION, dcode, kcode, b"fuzz", 5, 2, ndim, *dims, count)
    res = bytes(16) if reserved is None else reserved
    blob = head + wire._digest(head, res, payload, None) + res + payload
    try:
        out = wire.decode(blob, **META)
    except wire.WireError:
        return
    assert tuple(out.shape) == tuple(dims[:ndim]) and out.numel() * out.element_size() == len(payload)


test_forged_headers, test_forged_headers_long = _both(st.tuples(
    st.tuples(st.integers(0, 255), st.sampled_from([2, 2, 1, 9]), st.integers(0, 6),
              st.lists(st.one_of(st.integers(0, 8), st.integers(0, 2**64 - 1)), min_size=4,
                       max_size=4),
              st.one_of(st.integers(0, 64), st.integers(0, 2**64 - 1))),
    st.binary(max_size=256), st.one_of(st.none(), st.binary(min_size=16, max_size=16))),
    _check_forged_header)


def _check_any_bytes(data):
    with pytest.raises(wire.WireError):
        wire.decode(data, **META)


test_any_bytes, test_any_bytes_long = _both(st.binary(max_size=400), _check_any_bytes)


# ---- the handler ----

_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
              st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=30)


@pytest.fixture(scope="module")
def valid():
    """A memory store holding one worker's shard and round-3 parameters, and its valid event."""
    store = MemoryStore()
    ev, *_ = setup(store, load_dataset("digits"), attack="straggle", byzantine=True,
                   attack_kwargs={"delay": 0.0})
    return store, ev


def _mutate(ev, where_key, value, drop):
    ev = copy.deepcopy(ev)
    where, key = where_key
    target = ev["spec"] if where == "spec" else ev
    if drop:
        target.pop(key, None)
    else:
        target[key] = value
    return ev


def _check_event(store, event):
    H._STATES.clear()
    res = H.handle(event, lambda ev: contextlib.nullcontext(store))
    json.dumps(res)  # JSON-able, as Lambda needs
    if res["ok"] is not True:
        assert res["ok"] is False and res["error_type"] in _RESULT_TYPES, res
        assert isinstance(res["error"], str) and len(res["error"]) <= 500


_fields = st.one_of(
    st.tuples(st.just("event"), st.sampled_from(sorted(H._EVENT_FIELDS) + ["store", "extra"])),
    st.tuples(st.just("spec"), st.sampled_from(sorted(H._SPEC_FIELDS) + ["extra"])),
    st.tuples(st.sampled_from(["event", "spec"]), st.text(max_size=12)))
_mutations = st.tuples(_fields, _json, st.booleans())


@pytest.mark.parametrize("n", [pytest.param(300, id="quick"),
                               pytest.param(5_000, id="long", marks=pytest.mark.slow)])
def test_events(valid, n):
    """Arbitrary JSON, and valid events with a field replaced by arbitrary JSON or removed."""
    store, ev = valid
    opts = {"derandomize": True} if n <= 300 else {}

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow], **opts)
    @given(st.one_of(_json, _mutations.map(lambda m: _mutate(ev, *m)),
                     st.text(max_size=200), st.binary(max_size=200)))
    def check(event):
        _check_event(store, event)

    check()
    assert H.handle(ev, lambda e: contextlib.nullcontext(store))["ok"] is True
