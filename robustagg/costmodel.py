"""FaaS-versus-Ray time and cost estimates for a robustagg training run.

The model follows the accounting of LambdaML (Jiang et al., "Towards Demystifying Serverless
Machine Learning Training", SIGMOD 2021): on Lambda each of the n workers of a round is one
invocation that pulls the parameters from a store, computes, and pushes its gradient; the
parameter server (an always-on instance) publishes the parameters, collects the n gradients from
the store, aggregates and steps. Lambda bills GB-seconds of billed duration (1 ms granularity,
GB = 1024 MB) plus a fee per request; container-image cold starts are billed. A Ray cluster bills
its instances per second (60 s minimum) from start-up to the end of the run.

Per round, on Lambda (``waves = ceil(n / concurrency)``)::

    worker_s   = invoke + d*b/bw_fn + compute*slow(mem) + d*b/bw_fn         (one invocation)
    round_s    = d*b/bw_srv + waves*worker_s + n*d*b/bw_srv + aggregation + step
    lambda $   = n*rounds*worker_billed_s*mem/1024*price_gb_s + n*rounds*price_request + cold starts
    run $      = lambda $ + store $ + server hourly price * run time

``slow(mem) = max(1, ref_vcpus / vcpus(mem))`` with ``vcpus(mem) = min(6, mem / 1769)`` (Lambda gives
one vCPU per 1,769 MB); ``compute`` is the per-gradient time measured on ``ref_vcpus`` CPUs.

With compression (``Workload.upload_bytes``, e.g. :func:`compressed_upload`) a worker pushes
its message instead of ``d*b`` bytes (the parameters still come down dense) and spends
``compress_s`` more per gradient; the collect term becomes ``n*upload_bytes/bw_srv``.

On Ray: workers share the cluster's vCPUs, so a round computes ``ceil(n / vcpus)`` gradients one
after another on each vCPU; transport is ``n*d*b`` over the head node's bandwidth.

All prices and bandwidths are configuration (:class:`Prices`, with the date they were read),
and :func:`calibrate` derives the per-round times from a run's own metrics.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from robustagg.compression import k_of

GB_MB = 1024.0
MB = 1024.0 * 1024.0

# Lambda's limits (AWS Lambda quotas page), declared here once: the estimates check a run against
# them and the local Lambda runtime (robustagg.backends.serverless) enforces them.
LAMBDA_MAX_TIMEOUT_S = 900.0
LAMBDA_MIN_MEMORY_MB = 128
LAMBDA_MAX_MEMORY_MB = 10240
LAMBDA_SYNC_PAYLOAD = 6 * 2**20         # bytes, request of a RequestResponse invocation
LAMBDA_ASYNC_PAYLOAD = 1 * 2**20        # bytes, request of an Event invocation
LAMBDA_RESPONSE_PAYLOAD = 6 * 2**20     # bytes, a function's answer
LAMBDA_MB_PER_VCPU = 1769.0
LAMBDA_MAX_VCPUS = 6.0


@dataclass(frozen=True)
class Instance:
    hourly: float      # $ per hour, on demand
    vcpus: int
    bandwidth: float   # bytes per second, sustained network bandwidth


@dataclass(frozen=True)
class Prices:
    """Prices and bandwidths: us-east-1 on-demand list prices, x86.

    Written from AWS's published price pages as known on ``date`` (not re-checked from this
    machine, which has no internet): override them with :meth:`from_json` for another region,
    date or discount.
    """
    date: str = "2025-01"
    region: str = "us-east-1"
    lambda_gb_s: float = 0.0000166667           # $ per GB-second (x86)
    lambda_request: float = 0.20 / 1e6          # $ per invocation
    s3_put: float = 0.005 / 1000                # $ per PUT
    s3_get: float = 0.0004 / 1000               # $ per GET
    # Measured in LambdaML (SIGMOD 2021) and later studies: ~70-80 MB/s per function to S3/Redis.
    lambda_bandwidth: float = 75 * MB
    lambda_cold_start_s: float = 5.0            # container image with torch
    lambda_invoke_s: float = 0.03               # warm invocation round trip
    instances: dict = field(default_factory=lambda: {
        "c5.xlarge": Instance(0.17, 4, 1.25e9),
        "c5.2xlarge": Instance(0.34, 8, 1.25e9),
        "c5.4xlarge": Instance(0.68, 16, 1.25e9),
        "m5.xlarge": Instance(0.192, 4, 1.25e9),
        "m5.2xlarge": Instance(0.384, 8, 1.25e9),
        "cache.t4g.medium": Instance(0.065, 2, 0.6e9),
        "cache.r6g.large": Instance(0.206, 2, 1.25e9),
    })
    instance_min_billed_s: float = 60.0

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, path) -> "Prices":
        """Prices from a JSON file with any subset of the fields (instances replace by name)."""
        d = json.loads(Path(path).read_text())
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown price fields {sorted(unknown)} in {path}")
        base = cls()
        inst = dict(base.instances)
        inst.update({k: Instance(**v) for k, v in d.pop("instances", {}).items()})
        return replace(base, instances=inst, **d)


@dataclass(frozen=True)
class Workload:
    """What one run does. Times are seconds per round; ``compute_s`` is one gradient on
    ``ref_vcpus`` CPUs; ``bytes_per_element`` is 4 for float32."""
    d: int
    n: int
    rounds: int
    compute_s: float
    aggregation_s: float = 0.0
    step_s: float = 0.0
    bytes_per_element: int = 4
    ref_vcpus: float = 1.0
    # what a worker sends per round: None = its dense gradient (d * bytes_per_element), else a
    # compressed message's bytes (compressed_upload), which take compress_s to make
    upload_bytes: int | None = None
    compress_s: float = 0.0

    @property
    def sent_bytes(self) -> int:
        """Bytes one worker sends per round."""
        return self.d * self.bytes_per_element if self.upload_bytes is None else self.upload_bytes

    def __post_init__(self):
        for name in ("d", "n", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"Workload.{name} must be >= 1, got {getattr(self, name)}")
        if self.upload_bytes is not None and self.upload_bytes < 0:
            raise ValueError(f"Workload.upload_bytes must be >= 0, got {self.upload_bytes}")
        for name in ("compute_s", "aggregation_s", "step_s", "compress_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"Workload.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class LambdaSetup:
    memory_mb: int = 3008
    store: str = "redis"                  # "redis" (an ElastiCache node) or "s3"
    store_instance: str = "cache.r6g.large"
    server_instance: str = "c5.2xlarge"   # the always-on parameter server
    concurrency: int = 1000               # the account's concurrent-execution quota
    invocation: str = "RequestResponse"   # or "Event"
    event_bytes: int = 2048               # events carry references, not tensors
    runtime_mb: int = 450                 # python + torch resident before any tensor


@dataclass(frozen=True)
class RaySetup:
    instances: tuple = (("c5.2xlarge", 2),)
    startup_s: float = 120.0              # booting the nodes and starting Ray


@dataclass
class Breakdown:
    round_s: dict          # per-round time split, seconds
    time_s: float          # the whole run, seconds
    cost: dict             # dollars by item
    extra: dict = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.cost.values())


@dataclass
class Estimate:
    workload: Workload
    lam: Breakdown | None
    ray: Breakdown | None
    violations: list
    prices: Prices

    def table(self) -> str:
        lines = [f"workload: d={self.workload.d:,} n={self.workload.n} rounds={self.workload.rounds} "
                 f"compute={self.workload.compute_s:g}s/gradient  (prices {self.prices.region}, "
                 f"{self.prices.date})"]
        for name, b in (("Lambda", self.lam), ("Ray", self.ray)):
            if b is None:
                continue
            lines.append(f"\n{name}: {b.time_s:,.1f} s in all, ${b.total:,.4f}")
            lines.append("  per round: " + ", ".join(f"{k} {v:.4g}s" for k, v in b.round_s.items()))
            for k, v in b.cost.items():
                lines.append(f"  {k:<24} ${v:,.6f}")
            for k, v in b.extra.items():
                lines.append(f"  {k:<24} {v:,.6g}")
        if self.lam and self.ray:
            lines.append(f"\nLambda/Ray: time x{self.lam.time_s / self.ray.time_s:.3g}, "
                         f"cost x{self.lam.total / self.ray.total:.3g}")
        lines.append("\nLambda limit violations: " + ("none" if not self.violations else ""))
        lines += [f"  - {v}" for v in self.violations]
        return "\n".join(lines)


def compressed_upload(d: int, ratio: float, shared_mask: bool) -> int:
    """Payload bytes of a compressed message of a d-parameter model at ``ratio = k/d``: k float32
    values, plus k indices (int32 below d = 2^31, else int64) without a shared mask, as
    :class:`robustagg.compression.Receiver` counts them."""
    k = k_of(ratio, d)
    return k * (4 if shared_mask else 4 + (4 if d < 2**31 else 8))


def gb_seconds(invocations: int, memory_mb: float, billed_s: float) -> float:
    """GB-seconds of ``invocations`` each billed ``billed_s`` at ``memory_mb`` (GB = 1024 MB)."""
    return invocations * memory_mb / GB_MB * billed_s


def billed_seconds(duration_s: float) -> float:
    """Lambda's billed duration: rounded up to the next millisecond."""
    return math.ceil(round(duration_s * 1000.0, 6)) / 1000.0


def lambda_vcpus(memory_mb: float) -> float:
    return min(LAMBDA_MAX_VCPUS, memory_mb / LAMBDA_MB_PER_VCPU)


def _instance(prices: Prices, name: str) -> Instance:
    if name not in prices.instances:
        raise ValueError(f"unknown instance type {name!r}; known: {sorted(prices.instances)}")
    return prices.instances[name]


def _hourly_cost(inst: Instance, seconds: float, prices: Prices, count: int = 1) -> float:
    return count * inst.hourly * max(seconds, prices.instance_min_billed_s) / 3600.0


def lambda_violations(w: Workload, s: LambdaSetup, worker_s: float) -> list[str]:
    """Lambda's limits the run would break (timeout, memory, payloads, concurrency)."""
    v = []
    if not LAMBDA_MIN_MEMORY_MB <= s.memory_mb <= LAMBDA_MAX_MEMORY_MB:
        v.append(f"memory_mb={s.memory_mb} is outside Lambda's {LAMBDA_MIN_MEMORY_MB}.."
                 f"{LAMBDA_MAX_MEMORY_MB} MB")
    need_mb = s.runtime_mb + 3 * w.d * w.bytes_per_element / MB  # params + gradient + model copy
    if need_mb > s.memory_mb:
        v.append(f"a worker needs ~{need_mb:,.0f} MB (runtime + params + gradient + model), "
                 f"more than memory_mb={s.memory_mb}")
    if worker_s > LAMBDA_MAX_TIMEOUT_S:
        v.append(f"one invocation takes {worker_s:,.1f} s, over Lambda's "
                 f"{LAMBDA_MAX_TIMEOUT_S:g} s timeout")
    limit = LAMBDA_SYNC_PAYLOAD if s.invocation == "RequestResponse" else LAMBDA_ASYNC_PAYLOAD
    if s.event_bytes > limit:
        v.append(f"event of {s.event_bytes:,} bytes exceeds the {limit / MB:g} MB "
                 f"{s.invocation} payload limit")
    if w.n > s.concurrency:
        v.append(f"n={w.n} workers exceed the concurrency quota {s.concurrency}: rounds run in "
                 f"{math.ceil(w.n / s.concurrency)} waves")
    return v


def estimate_lambda(w: Workload, s: LambdaSetup = LambdaSetup(), prices: Prices = Prices()):
    """Time and dollars of the run on Lambda: (Breakdown, violations)."""
    if s.store not in ("redis", "s3"):
        raise ValueError(f"LambdaSetup.store must be 'redis' or 's3', got {s.store!r}")
    nbytes = w.d * w.bytes_per_element
    server = _instance(prices, s.server_instance)
    store_bw = server.bandwidth
    if s.store == "redis":
        store_bw = min(store_bw, _instance(prices, s.store_instance).bandwidth)
    fn_bw = prices.lambda_bandwidth
    slow = max(1.0, w.ref_vcpus / lambda_vcpus(s.memory_mb))
    pull = nbytes / fn_bw
    compute = (w.compute_s + w.compress_s) * slow
    push = w.sent_bytes / fn_bw
    worker_s = prices.lambda_invoke_s + pull + compute + push
    billed = billed_seconds(pull + compute + push)
    waves = math.ceil(w.n / min(s.concurrency, w.n))
    split = {
        "publish": nbytes / store_bw,
        "workers": waves * worker_s,
        "collect": w.n * w.sent_bytes / store_bw,
        "aggregation": w.aggregation_s,
        "step": w.step_s,
    }
    round_s = sum(split.values())
    cold = min(w.n, s.concurrency) * prices.lambda_cold_start_s
    time_s = prices.lambda_cold_start_s + w.rounds * round_s
    inv = w.n * w.rounds
    cost = {
        "lambda_compute": (gb_seconds(inv, s.memory_mb, billed)
                           + gb_seconds(1, s.memory_mb, cold)) * prices.lambda_gb_s,
        "lambda_requests": inv * prices.lambda_request,
    }
    if s.store == "redis":
        cost["store_redis_node"] = _hourly_cost(_instance(prices, s.store_instance), time_s, prices)
    else:  # per round: 1 params PUT, n params GETs, n gradient PUTs, n gradient GETs
        cost["store_s3_requests"] = w.rounds * ((1 + w.n) * prices.s3_put + 2 * w.n * prices.s3_get)
    cost["server_instance"] = _hourly_cost(server, time_s, prices)
    b = Breakdown(split, time_s, cost, {"billed_s_per_invocation": billed,
                                        "gb_s_total": gb_seconds(inv, s.memory_mb, billed)})
    return b, lambda_violations(w, s, worker_s)


def estimate_ray(w: Workload, s: RaySetup = RaySetup(), prices: Prices = Prices()) -> Breakdown:
    """Time and dollars of the run on a Ray cluster of ``s.instances`` (the first is the head)."""
    if not s.instances:
        raise ValueError("RaySetup.instances must name at least one (type, count)")
    insts = [(_instance(prices, t), int(c)) for t, c in s.instances]
    vcpus = sum(i.vcpus * c for i, c in insts)
    head = insts[0][0]
    nbytes = w.d * w.bytes_per_element
    split = {
        "publish": nbytes / head.bandwidth,
        "workers": math.ceil(w.n / vcpus) * (w.compute_s + w.compress_s) * max(1.0, w.ref_vcpus),
        "collect": w.n * w.sent_bytes / head.bandwidth,
        "aggregation": w.aggregation_s,
        "step": w.step_s,
    }
    time_s = s.startup_s + w.rounds * sum(split.values())
    cost = {f"{t} x{c}": _hourly_cost(_instance(prices, t), time_s, prices, c) for t, c in s.instances}
    return Breakdown(split, time_s, cost, {"cluster_vcpus": vcpus})


def estimate(workload: Workload, lam: LambdaSetup | None = LambdaSetup(),
             ray: RaySetup | None = RaySetup(), prices: Prices = Prices()) -> Estimate:
    """Estimate the run on Lambda and on Ray (either may be None), with Lambda's limit violations."""
    lb, viol = estimate_lambda(workload, lam, prices) if lam is not None else (None, [])
    rb = estimate_ray(workload, ray, prices) if ray is not None else None
    return Estimate(workload, lb, rb, viol, prices)


def calibrate(metrics, d: int, n: int, rounds: int | None = None, skip: int = 1) -> Workload:
    """A Workload from a run's own metrics: JSON lines (a path) or a list of per-round dicts.

    Uses the medians, over rounds after the first ``skip`` (warm-up), of the recorded time split:
    ``compute_s`` (worker compute: the slowest worker of a round), ``aggregation_s``, ``step_s``,
    the names of :mod:`robustagg.training.metrics` (``time_<kind>`` is accepted too).
    """
    if isinstance(metrics, (str, Path)):
        rows = [json.loads(line) for line in Path(metrics).read_text().splitlines() if line.strip()]
    else:
        rows = list(metrics)
    rows = [r for r in rows if _pick(r, "compute") is not None][skip:]
    if not rows:
        raise ValueError("calibrate: no round with a compute time in the metrics "
                         "(expected key compute_s or time_compute)")

    def med(kind):
        vals = sorted(v for r in rows if (v := _pick(r, kind)) is not None)
        return vals[len(vals) // 2] if vals else 0.0

    return Workload(d=d, n=n, rounds=rounds or len(rows) + skip, compute_s=med("compute"),
                    aggregation_s=med("aggregation"), step_s=med("step"))


def _pick(row: dict, kind: str):
    for key in (f"{kind}_s", f"time_{kind}"):
        if key in row and row[key] is not None:
            return float(row[key])
    return None


def rescale(w: Workload, d: int, n: int, rounds: int) -> Workload:
    """``w`` at another scale: compute and step ~ d, aggregation ~ n^2 d (Krum-like, a stated
    assumption, not a measurement)."""
    return replace(w, d=d, n=n, rounds=rounds, compute_s=w.compute_s * d / w.d,
                   aggregation_s=w.aggregation_s * (n / w.n) ** 2 * d / w.d,
                   step_s=w.step_s * d / w.d)


def invocation_cost(memory_mb: float, billed_ms: float, prices: Prices = Prices(),
                    invocations: int = 1) -> dict:
    """Dollars of ``invocations`` billed ``billed_ms`` each at ``memory_mb``: GB-seconds and
    requests (``{"gb_s", "compute", "requests", "total"}``)."""
    gbs = gb_seconds(invocations, memory_mb, billed_ms / 1000.0)
    out = {"gb_s": gbs, "compute": gbs * prices.lambda_gb_s,
           "requests": invocations * prices.lambda_request}
    out["total"] = out["compute"] + out["requests"]
    return out


@dataclass(frozen=True)
class CellEstimate:
    """A whole run in one invocation (a sweep cell): seconds and dollars."""
    time_s: float
    cost: float
    workload: Workload
    memory_mb: int

    def over_limit(self, timeout_s: float = LAMBDA_MAX_TIMEOUT_S) -> bool:
        return self.time_s > min(timeout_s, LAMBDA_MAX_TIMEOUT_S)


def estimate_cell(w: Workload, memory_mb: int, startup_s: float = 5.0,
                  prices: Prices = Prices()) -> CellEstimate:
    """A run with its ``w.n`` workers in-process, on one function of ``memory_mb``: per round
    n gradients one after another, then aggregation and step, all on the function's CPU share
    (``slow(mem)`` as for a worker); plus ``startup_s`` (imports, data, model). Billed as one
    invocation."""
    slow = max(1.0, w.ref_vcpus / lambda_vcpus(memory_mb))
    time_s = startup_s + w.rounds * slow * (w.n * w.compute_s + w.aggregation_s + w.step_s)
    cost = invocation_cost(memory_mb, billed_seconds(time_s) * 1000.0, prices)["total"]
    return CellEstimate(time_s, cost, w, memory_mb)


# ---- right-sizing a function's memory from measurements ----------------------------------------
@dataclass(frozen=True)
class SizePoint:
    """One memory size as calibrated: median billed ms per invocation, peak resident MB, and
    whether it ran (``ok``: no out-of-memory kill, no error)."""
    memory_mb: int
    billed_ms: float
    peak_mb: float
    ok: bool = True

    def cost(self, prices: Prices = Prices()) -> float:
        return invocation_cost(self.memory_mb, self.billed_ms, prices)["total"]


@dataclass(frozen=True)
class Sizing:
    """The choice of :func:`right_size`: ``min_cost`` (the size of least $ whose time is within
    ``time_bound_ms``) and ``min_time`` (the fastest size whose $ is within ``cost_bound``),
    with the ``default`` size's point and the bounds used."""
    default: SizePoint
    min_cost: SizePoint
    min_time: SizePoint
    time_bound_ms: float
    cost_bound: float
    headroom: float

    def saving(self, prices: Prices = Prices()) -> float:
        """The share of the default size's $ per invocation that ``min_cost`` saves."""
        return 1.0 - self.min_cost.cost(prices) / self.default.cost(prices)

    def to_dict(self, prices: Prices = Prices()) -> dict:
        def point(p):
            return {**asdict(p), "usd_per_invocation": p.cost(prices)}

        return {"default": point(self.default), "min_cost": point(self.min_cost),
                "min_time": point(self.min_time), "time_bound_ms": self.time_bound_ms,
                "cost_bound_usd": self.cost_bound, "headroom": self.headroom,
                "saving_vs_default": self.saving(prices), "prices_date": prices.date}


def feasible(p: SizePoint, headroom: float = 0.1) -> bool:
    """``p`` ran, and its peak leaves ``headroom`` (a share of the size) free."""
    return p.ok and p.peak_mb <= (1.0 - headroom) * p.memory_mb


def right_size(points, default_mb: int, time_bound_ms: float | None = None,
               cost_bound: float | None = None, headroom: float = 0.1, slack: float = 0.05,
               prices: Prices = Prices()) -> Sizing:
    """Pick from calibrated ``points`` (:class:`SizePoint`) the size of least $ within
    ``time_bound_ms`` and the fastest size within ``cost_bound`` ($ per invocation).

    The bounds default to the ``default_mb`` point's time and $ with ``slack`` (measurement
    noise: 5%), so ``min_cost`` is "cheapest at equal time" and ``min_time`` "fastest at equal
    cost". Only sizes that ran with ``headroom`` free count (:func:`feasible`); ties go to the
    smaller size. ValueError when the default was not calibrated or nothing fits a bound."""
    points = sorted(points, key=lambda p: p.memory_mb)
    base = next((p for p in points if p.memory_mb == default_mb), None)
    if base is None or not base.ok:
        raise ValueError(f"right_size: the default memory {default_mb} MB has no successful "
                         f"calibration point; calibrated: {[p.memory_mb for p in points]}")
    tb = base.billed_ms * (1 + slack) if time_bound_ms is None else time_bound_ms
    cb = base.cost(prices) * (1 + slack) if cost_bound is None else cost_bound
    ok = [p for p in points if feasible(p, headroom)]
    in_time = [p for p in ok if p.billed_ms <= tb]
    in_cost = [p for p in ok if p.cost(prices) <= cb]
    if not in_time or not in_cost:
        raise ValueError(f"right_size: no calibrated size with {headroom:.0%} memory headroom "
                         f"{'within ' + format(tb, '.1f') + ' ms' if not in_time else ''}"
                         f"{' within $' + format(cb, '.3g') if not in_cost else ''}")
    return Sizing(base, min(in_time, key=lambda p: (p.cost(prices), p.memory_mb)),
                  min(in_cost, key=lambda p: (p.billed_ms, p.memory_mb)), tb, cb, headroom)


def provisioning(memory_mb: int, peak_mb: float, billed_ms: float, threshold: float = 0.25,
                 threads: int = 1, curve=None, prices: Prices = Prices()):
    """Whether a function of ``memory_mb`` that peaked at ``peak_mb`` and billed ``billed_ms``
    per invocation is over- or under-provisioned by more than ``threshold``:
    ``("under" | "over" | "ok", reason)``.

    Under: the peak is within ``threshold`` of the size (an out-of-memory kill is near); or, with
    a calibrated ``curve`` (SizePoints), a larger size is more than ``threshold`` faster for at
    most ``threshold`` more $. Over: with a ``curve``, a feasible size is more than ``threshold`` cheaper
    and no slower than ``(1 + threshold)`` times now; without one, the memory is more than
    ``threshold`` above both the peak and what ``threads`` threads can use as CPU (Lambda gives
    one vCPU per 1,769 MB), so a smaller size would cost less at the same speed.
    """
    if peak_mb > (1 - threshold) * memory_mb:
        return "under", (f"peak {peak_mb:.0f} MB is within {threshold:.0%} of {memory_mb} MB: "
                         f"an out-of-memory kill is near")
    now = invocation_cost(memory_mb, billed_ms, prices)["total"]
    if curve:
        here = min(curve, key=lambda p: abs(p.memory_mb - memory_mb))
        scale = billed_ms / here.billed_ms if here.billed_ms else 1.0  # today's speed vs calibration
        fit = [p for p in curve if feasible(p, threshold)]
        for p in sorted(fit, key=lambda p: p.cost(prices)):
            t, c = p.billed_ms * scale, invocation_cost(p.memory_mb, p.billed_ms * scale, prices)["total"]
            if p.memory_mb < memory_mb and c < (1 - threshold) * now and t <= (1 + threshold) * billed_ms:
                return "over", (f"{p.memory_mb} MB would cost {1 - c / now:.0%} less per "
                                f"invocation at {t:.0f} ms (now {billed_ms:.0f} ms at {memory_mb} MB)")
        for p in sorted(fit, key=lambda p: p.billed_ms):
            t, c = p.billed_ms * scale, invocation_cost(p.memory_mb, p.billed_ms * scale, prices)["total"]
            if p.memory_mb > memory_mb and t < (1 - threshold) * billed_ms and c <= (1 + threshold) * now:
                return "under", (f"{p.memory_mb} MB would take {1 - t / billed_ms:.0%} less time "
                                 f"({t:.0f} ms) for {c / now - 1:+.0%} $ per invocation")
        return "ok", "the calibrated curve has no size better by the threshold"
    usable = max(peak_mb / (1 - threshold), min(threads, LAMBDA_MAX_VCPUS) * LAMBDA_MB_PER_VCPU)
    if memory_mb > (1 + threshold) * usable:
        smaller = max(LAMBDA_MIN_MEMORY_MB, math.ceil(usable))
        return "over", (f"{memory_mb} MB is more than {threshold:.0%} above both the peak "
                        f"({peak_mb:.0f} MB) and the CPU {threads} thread(s) can use "
                        f"({min(threads, LAMBDA_MAX_VCPUS) * LAMBDA_MB_PER_VCPU:.0f} MB): "
                        f"~{smaller} MB would cost {1 - smaller / memory_mb:.0%} less at the "
                        f"same speed")
    return "ok", "within the threshold"


# ---- the round's floor, and a sharded server on a cluster ----------------------------------------
def round_floor(n: int, d: int, store_Bps: float, kernel_s: float, compute_s: float = 0.0,
                bytes_per_element: int = 4) -> dict:
    """The floor of one round of the Ray training loop on one machine, by parts (seconds):
    ``compute`` (the workers' compute, as measured), ``transport`` (moving the n gradients
    into the server's shards, ``b·n·d`` bytes, and the parameters out, ``b·d``, at the object
    store's bandwidth ``store_Bps`` in bytes per second: one put plus one get into a buffer,
    measured), ``kernel`` (the rule on a ready ``[n, d]`` buffer, measured), and ``total``."""
    if n < 1 or d < 1:
        raise ValueError(f"round_floor: need n >= 1 and d >= 1, got n={n}, d={d}")
    if not store_Bps > 0:
        raise ValueError(f"round_floor: store_Bps must be > 0, got {store_Bps}")
    if kernel_s < 0 or compute_s < 0:
        raise ValueError(f"round_floor: times must be >= 0, got kernel_s={kernel_s}, "
                         f"compute_s={compute_s}")
    transport = bytes_per_element * (n * d + d) / store_Bps
    return {"compute": compute_s, "transport": transport, "kernel": kernel_s,
            "total": compute_s + transport + kernel_s}


@dataclass(frozen=True)
class Cluster:
    """A Ray cluster for a sharded parameter server: ``nodes`` machines of ``cores`` cores,
    each with a ``network_Bps`` NIC (bytes per second, each way) and an object store moving
    ``store_Bps`` (one put plus one get, as :func:`round_floor` measures it); ``shards`` (k)
    shards, at most one per node (a ``SPREAD`` placement group)."""
    nodes: int = 16
    cores: int = 32
    network_Bps: float = 25e9 / 8
    store_Bps: float = 2e9
    shards: int = 16

    def __post_init__(self):
        for name in ("nodes", "cores", "shards"):
            if getattr(self, name) < 1:
                raise ValueError(f"Cluster.{name} must be >= 1, got {getattr(self, name)}")
        if self.shards > self.nodes:
            raise ValueError(f"Cluster.shards={self.shards} > nodes={self.nodes}: shards spread "
                             f"one per node")
        for name in ("network_Bps", "store_Bps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Cluster.{name} must be > 0, got {getattr(self, name)}")


def project_cluster(n: int, d: int, cluster: Cluster, compute_s: float, kernel_s: float,
                    kernel_cores: int, bytes_per_element: int = 4) -> dict:
    """One round of a sharded server with n workers on ``cluster``, by parts (seconds), and the
    server's memory per shard node (bytes). Inputs measured on one machine: ``compute_s`` is
    one gradient on one core; ``kernel_s`` the rule on the whole ``[n, d]`` buffer with
    ``kernel_cores`` cores (its time taken as proportional to the values it reads, per core).

    - ``compute``: the n gradients over all ``nodes · cores`` cores, ``ceil(n / cores_all)``
      one after another;
    - ``publish``: the coordinator gathers the k parameter slices and sends ``b·d`` to every
      other node, one after another through its NIC (no broadcast tree assumed);
    - ``network``: every worker sends each shard its slice (no coordinator hop); a shard node
      receives ``b·n·d/k`` bytes less the share of the workers on its own node, a node's
      workers send ``b·d·n/nodes`` less what stays on the node; the busier NIC sets the time;
    - ``store``: each shard node moves its ``b·n·d/k`` bytes through its object store into its
      buffer (one put plus one get);
    - ``kernel``: each shard runs the rule on its ``[n, d/k]`` slice with its node's cores, the
      shards in parallel (the coordinator's n × n work is negligible next to it);
    - ``memory_per_shard``: the shard's ``[n, d/k]`` buffer plus the same bytes held in the
      object store while the round's gradients arrive."""
    c, b = cluster, bytes_per_element
    if n < 1 or d < 1:
        raise ValueError(f"project_cluster: need n >= 1 and d >= 1, got n={n}, d={d}")
    if compute_s < 0 or kernel_s < 0 or kernel_cores < 1:
        raise ValueError(f"project_cluster: need compute_s, kernel_s >= 0 and kernel_cores >= 1, "
                         f"got {compute_s}, {kernel_s}, {kernel_cores}")
    remote = (c.nodes - 1) / c.nodes  # the share of any node's traffic that leaves it
    into_shard = b * n * d / c.shards * remote
    out_of_node = b * d * n / c.nodes * remote
    split = {
        "compute": math.ceil(n / (c.nodes * c.cores)) * compute_s,
        "publish": b * d * (c.nodes - 1) / c.network_Bps,
        "network": max(into_shard, out_of_node) / c.network_Bps,
        "store": b * n * d / c.shards / c.store_Bps,
        "kernel": kernel_s / c.shards * kernel_cores / c.cores,
    }
    return {"round_s": sum(split.values()), "split": split,
            "memory_per_shard": 2 * b * n * d / c.shards}
