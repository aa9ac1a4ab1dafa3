"""Cosine distances written as a loop, for the references of the clustering rules."""
import numpy as np


def cosine_distances(a):
    """1 - cos(a_i, a_j) (numpy [n, n]); 1 for a pair with a zero row, 0 on the diagonal."""
    n = len(a)
    norms = np.linalg.norm(a, axis=1)
    dist = np.ones((n, n))
    for i in range(n):
        for j in range(n):
            if norms[i] > 0 and norms[j] > 0:
                dist[i, j] = 1 - min(max(a[i] @ a[j] / (norms[i] * norms[j]), -1), 1)
    np.fill_diagonal(dist, 0.0)
    return dist, norms
