"""Plain reference implementations of the rules (Python loops over float64 values), written from
the papers' definitions, against which the library is tested. Slow on purpose: obviously right."""
import math

import torch


def rows(x):
    return [[float(v) for v in r] for r in x.double()]


def _key(v):  # NaN is ordered as +inf
    return math.inf if math.isnan(v) else v


def median(x):
    r = rows(x)
    n, d = len(r), len(r[0])
    out = []
    for k in range(d):
        col = sorted((_key(r[i][k]) for i in range(n)))
        out.append(col[n // 2] if n % 2 else (col[n // 2 - 1] + col[n // 2]) / 2)
    return torch.tensor(out, dtype=torch.float64)


def trimmed_mean(x, f):
    r = rows(x)
    n, d = len(r), len(r[0])
    out = []
    for k in range(d):
        col = sorted(_key(r[i][k]) for i in range(n))[f:n - f]
        out.append(sum(col) / len(col))
    return torch.tensor(out, dtype=torch.float64)


def sq_dist(a, b):
    if not all(math.isfinite(v) for v in a + b):
        return math.inf
    return sum((u - v) ** 2 for u, v in zip(a, b))


def krum_scores(x, f, k=None):
    r = rows(x)
    n = len(r)
    k = n - f - 2 if k is None else k
    scores = []
    for i in range(n):
        ds = sorted(sq_dist(r[i], r[j]) for j in range(n) if j != i)
        scores.append(sum(ds[:k]))
    return scores


def lowest(scores, m):
    """m lowest finite scores, ties to the lowest index."""
    order = sorted((s, i) for i, s in enumerate(scores) if math.isfinite(s))
    return [i for _, i in order[:m]]


def multi_krum(x, f, m):
    sel = lowest(krum_scores(x, f), m)
    r = rows(x)
    return torch.tensor([sum(r[i][k] for i in sel) / len(sel) for k in range(len(r[0]))],
                        dtype=torch.float64), sel


def bulyan(x, f):
    r = rows(x)
    n = len(r)
    theta, beta = n - 2 * f, n - 4 * f
    remaining = list(range(n))
    chosen = []
    for _ in range(theta):
        sub = torch.tensor([r[i] for i in remaining], dtype=torch.float64)
        k = min(max(len(remaining) - f - 2, 1), len(remaining) - 1)
        pick = lowest(krum_scores(sub, f, k), 1)[0]
        chosen.append(remaining.pop(pick))
    out = []
    for k in range(len(r[0])):
        vals = [_key(r[i][k]) for i in chosen]
        s = sorted(vals)
        med = s[theta // 2] if theta % 2 else (s[theta // 2 - 1] + s[theta // 2]) / 2
        close = sorted(range(theta), key=lambda p: (abs(vals[p] - med), p))[:beta]
        out.append(sum(vals[p] for p in close) / beta)
    return torch.tensor(out, dtype=torch.float64), chosen


def nnm(x, f):
    r = rows(x)
    n, d = len(r), len(r[0])
    out = []
    for i in range(n):
        order = sorted(range(n), key=lambda j: (j != i, sq_dist(r[i], r[j]), j))[:n - f]
        out.append([sum(r[j][k] for j in order) / (n - f) for k in range(d)])
    return torch.tensor(out, dtype=torch.float64)


def norm(v):
    return math.sqrt(sum(u * u for u in v))


def arc(x, f):
    r = rows(x)
    n = len(r)
    k = int(2 * f * (n - f) / n)
    norms = [norm(v) for v in r]
    order = sorted(range(n), key=lambda i: (-norms[i], i))
    out = [list(v) for v in r]
    if k:
        c = norms[order[k]]
        for i in order[:k]:
            out[i] = [u * min(1.0, c / norms[i]) for u in r[i]]
    return torch.tensor(out, dtype=torch.float64)


def centered_clipping(x, tau, n_iter, center):
    r = rows(x)
    n, d = len(r), len(r[0])
    v = [float(c) for c in center]
    for _ in range(n_iter):
        acc = [0.0] * d
        for xi in r:
            diff = [a - b for a, b in zip(xi, v)]
            s = min(1.0, tau / norm(diff)) if norm(diff) > 0 else 1.0
            acc = [a + s * u for a, u in zip(acc, diff)]
        v = [a + b / n for a, b in zip(v, acc)]
    return torch.tensor(v, dtype=torch.float64)


def weiszfeld(x, iters=5000, floor=1e-12):
    """A long plain Weiszfeld run in float64 (distances floored at ``floor``)."""
    x = x.double()
    z = x.mean(0)
    for _ in range(iters):
        w = 1 / (x - z).norm(dim=1).clamp_min(floor)
        z = (w[:, None] * x).sum(0) / w.sum()
    return z


def gm_objective(x, z):
    return sum(norm([a - b for a, b in zip(xi, rows(z[None])[0])]) for xi in rows(x))


def make_inputs(kind: str, n: int, d: int, seed: int) -> torch.Tensor:
    """Random inputs of several shapes of trouble: continuous, integer-valued (ties everywhere),
    and with duplicated rows."""
    g = torch.Generator().manual_seed(seed)
    if kind == "normal":
        return torch.randn(n, d, generator=g)
    if kind == "ties":
        return torch.randint(-2, 3, (n, d), generator=g).float()
    if kind == "duplicates":
        x = torch.randn(n, d, generator=g)
        src = torch.randint(0, n, (n // 2,), generator=g)
        dst = torch.randint(0, n, (n // 2,), generator=g)
        x[dst] = x[src]
        return x
    raise ValueError(kind)


KINDS = ["normal", "ties", "duplicates"]
