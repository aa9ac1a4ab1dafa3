"""The adaptive attack on ClippedClustering of fedlib/Blades (Li, Ngai, Voigt, "An experimental
study of Byzantine-robust aggregation schemes in federated learning", IEEE Transactions on Big
Data 2023; Blades' ``AttackclippedclusteringAdversary``, its "chain" attack).

ClippedClustering keeps the larger of two clusters of cosine distances. The attack places the
Byzantine vectors one after the other, each a further angle ``theta_cross`` away from the
honest mean, so that single-linkage clustering chains them to the honest group. With
``mu`` the honest mean, ``c(a, b) = 1 - cos(a, b)``:

    theta_cross = arccos(1 - min_{i != j} c(g_i, g_j)) - 0.1
    G           = the larger of the two single-linkage clusters of the honest c(g_i, g_j)
    k           = argmax_{i in G} c(g_i, mu),  theta = arccos(1 - c(g_k, mu)),  m = g_k / ||g_k||

and for each Byzantine worker j = 1..f in turn, with t = theta + theta_cross - 1e-4:

    if theta + theta_cross >= pi:  m = -10 mu
    else:  m = 10 (a mu/||mu|| + b m),  a = cos t - sin t / tan theta,
           b = cos(theta_cross - 1e-4) + sin(theta_cross - 1e-4) / tan theta,  theta = t

(worker j sends the m of its turn; m carries over from one worker to the next, as in Blades).
When theta = 0 (the farthest member of G points along mu) or mu = 0 the rotation has no plane
and Blades divides by zero; here every worker then sends -10 mu.
Blades picks k's vector with k's position inside G but then reads it from all the honest rows;
here k indexes G itself, the vector the construction is about. Needs h >= 2; scikit-learn's
agglomerative clustering, imported on first use.
"""
from __future__ import annotations

import math

import torch

from attacks.base import ModelAttack


def _cos_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos between the rows of a [m, d] and b [k, d] (float64 [m, k]; 1 for a zero row)."""
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a @ b.T) / (na[:, None] * nb[None, :])
    return 1.0 - torch.nan_to_num(cos, nan=0.0).clamp(-1.0, 1.0)


class AdaptiveClippedClustering(ModelAttack):
    """``Tensor[h, d] -> Tensor[f, d]``: Blades' chain attack on ClippedClustering (see the
    module docstring); row j is the j-th link of the chain."""

    name = "adaptive_clipped_clustering"
    min_honest = 2

    def _forge(self, honest, f, rule):
        from sklearn.cluster import AgglomerativeClustering

        x = honest.to(torch.float64)
        h = x.shape[0]
        mu = x.mean(dim=0)
        dist = _cos_dist(x, x)
        labels = torch.from_numpy(AgglomerativeClustering(
            n_clusters=2, metric="precomputed", linkage="single").fit(
                dist.clamp_min(0.0).numpy()).labels_)
        off = dist + torch.diag(torch.full((h,), math.inf, dtype=torch.float64))
        theta_cross = math.acos(1.0 - float(off.min())) - 0.1
        flag = 1 if int(labels.sum()) > h // 2 else 0
        group = x[labels == flag]
        to_mean = _cos_dist(group, mu[None, :]).squeeze(1)
        k = int(torch.argmax(to_mean))
        theta = math.acos(1.0 - float(to_mean[k]))
        m = group[k] / group[k].norm()
        if theta == 0.0 or float(mu.norm()) == 0.0:
            return (-10.0 * mu).unsqueeze(0).repeat(f, 1)
        mu_unit = mu / mu.norm()
        rows = []
        for _ in range(f):
            if theta + theta_cross >= math.pi:
                m = -10.0 * mu
            else:
                t = theta + theta_cross - 1e-4
                a = math.cos(t) - math.sin(t) / math.tan(theta)
                b = math.cos(theta_cross - 1e-4) + math.sin(theta_cross - 1e-4) / math.tan(theta)
                m = 10.0 * (a * mu_unit + b * m)
                theta = t
            rows.append(m)
        return torch.stack(rows)
