"""Datasets and partitions for the training loop. Nothing is downloaded at run time.

A dataset is loaded into memory as a :class:`Data` (float32 features, int64 labels or float32
targets, train and test splits). Names: ``digits`` (scikit-learn's bundled 8×8 digits, the
default), ``breast_cancer``, ``synthetic`` (a linear or logistic problem of chosen dimension),
``fashion_mnist`` (Debian's ``dataset-fashion-mnist``, read offline), ``mnist`` and ``cifar10``
(files the user already has, at a given path), ``simulated`` (with the ``simulated`` model:
synthetic gradients, :mod:`robustagg.run.simulated`). The loaders' type hints are their settings'
schema in the experiment config. Any ``torch.utils.data.Dataset`` (or a
zero-argument callable returning ``(train, test)`` datasets) is accepted by :func:`load_dataset`.

Partitions split the training indices among the workers: ``iid``, ``dirichlet`` (class
proportions per worker drawn from Dir(α), Hsu et al. 2019) and ``shards`` (sorted by label, cut
into shards, ``shards_per_worker`` shards each, McMahan et al. 2017). Every split is a pure
function of its seed, so a stateless worker recomputes its own shard.
"""
from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch

from .simulated import NAME as SIMULATED
from .simulated import simulated_data

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@dataclass
class Data:
    """In-memory train/test split. ``x_*``: float32 ``[N, *input_shape]``; ``y_*``: int64 ``[N]``
    (classification) or float32 ``[N]`` (regression, ``num_classes == 0``)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def task(self) -> str:
        return "classification" if self.num_classes > 0 else "regression"


def _split(x, y, test_fraction, seed, num_classes):
    """Seeded shuffle, then the last ``test_fraction`` as test set."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64 if num_classes else torch.float32)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(x)))
    tr, te = perm[: len(x) - n_test], perm[len(x) - n_test:]
    return Data(x[tr], y[tr], x[te], y[te], num_classes)


def _standardize(data: Data) -> Data:
    """Scale features with the training split's mean and std (test uses the same)."""
    mu = data.x_train.mean(0)
    sd = data.x_train.std(0).clamp_min(1e-8)
    data.x_train = (data.x_train - mu) / sd
    data.x_test = (data.x_test - mu) / sd
    return data


def digits(test_fraction: float = 0.2, split_seed: int = 0):
    """scikit-learn's 8×8 digits (1,797 images, 10 classes), pixels scaled to [0, 1], flat [64]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return _split(d.data / 16.0, d.target, test_fraction, split_seed, 10)


def breast_cancer(test_fraction: float = 0.2, split_seed: int = 0):
    """scikit-learn's Wisconsin breast cancer (569 × 30, 2 classes), standardized."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return _standardize(_split(d.data, d.target, test_fraction, split_seed, 2))


def synthetic(features: int = 20, samples: int = 2000, task: str = "logistic",
              noise: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0):
    """x ~ N(0, I_features), w* ~ N(0, I)/sqrt(features); ``logistic``: y = 1[x·w* + noise·ε > 0]
    (2 classes); ``linear``: y = x·w* + noise·ε (regression). Seeded by ``split_seed``."""
    if task not in ("logistic", "linear"):
        raise ValueError(f"synthetic: task must be 'logistic' or 'linear', got task={task!r}")
    if features < 1 or samples < 2:
        raise ValueError(f"synthetic: need features >= 1 and samples >= 2, got "
                         f"features={features}, samples={samples}")
    g = torch.Generator().manual_seed(split_seed)
    x = torch.randn(samples, features, generator=g)
    w = torch.randn(features, generator=g) / features ** 0.5
    z = x @ w + noise * torch.randn(samples, generator=g)
    if task == "logistic":
        return _split(x, (z > 0).long(), test_fraction, split_seed, 2)
    return _split(x, z, test_fraction, split_seed, 0)


def _read_idx(path):
    """An IDX file (the MNIST format), gzipped or not, as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(root, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(root, name)):
            return os.path.join(root, name)
    return None


def _idx_dataset(root, name, hint, flatten):
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    paths = [_find(root, s) for s in stems]
    missing = [s for s, p in zip(stems, paths) if p is None]
    if missing:
        raise FileNotFoundError(f"{name}: files {missing} (optionally .gz) not found in "
                                f"root={root!r}. {hint}")
    xtr, ytr, xte, yte = (_read_idx(p) for p in paths)

    def images(a):
        t = torch.from_numpy(a.astype(np.float32) / 255.0)
        return t.reshape(len(t), -1) if flatten else t.unsqueeze(1)

    return Data(images(xtr), torch.from_numpy(ytr.astype(np.int64)),
                images(xte), torch.from_numpy(yte.astype(np.int64)), 10)


def fashion_mnist(root: str = FASHION_MNIST_DIR, flatten: bool = True):
    """Fashion-MNIST (60k/10k, 28×28, 10 classes) from IDX files; flat [784] or [1, 28, 28]."""
    return _idx_dataset(root, "fashion_mnist",
                        "Install Debian's package: apt-get install dataset-fashion-mnist", flatten)


def mnist(root: str | None = None, flatten: bool = True):
    """MNIST from the four IDX files (``train-images-idx3-ubyte[.gz]``, ...) in ``root``."""
    if root is None:
        raise ValueError("mnist: pass dataset_kwargs={'root': <folder>} holding the four MNIST "
                         "IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                         "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)")
    return _idx_dataset(root, "mnist", "Put the four MNIST IDX files there "
                        "(nothing is downloaded at run time).", flatten)


def cifar10(root: str | None = None):
    """CIFAR-10 (50k/10k, [3, 32, 32], 10 classes) from the python-version batches in ``root``
    (the folder ``cifar-10-batches-py`` of ``cifar-10-python.tar.gz``)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    hint = ("cifar10: pass dataset_kwargs={'root': <folder>} pointing at the extracted "
            "'cifar-10-batches-py' folder (data_batch_1..5, test_batch); nothing is downloaded")
    if root is None or any(not os.path.exists(os.path.join(root, n)) for n in names):
        raise FileNotFoundError(f"{hint}; got root={root!r}")
    xs, ys = [], []
    for n in names:
        # These are the user's own files in CIFAR's published pickle format (never worker data).
        with open(os.path.join(root, n), "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        xs.append(np.asarray(batch[b"data"], dtype=np.float32).reshape(-1, 3, 32, 32) / 255.0)
        ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
    x, y = torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
    return Data(x[:50000], y[:50000], x[50000:], y[50000:], 10)


DATASETS = {"digits": digits, "breast_cancer": breast_cancer, "synthetic": synthetic,
            "fashion_mnist": fashion_mnist, "mnist": mnist, "cifar10": cifar10,
            SIMULATED: simulated_data}


def _stack(ds):
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in xs]), \
        torch.as_tensor(np.asarray(ys))


def from_torch(train, test, num_classes=None) -> Data:
    """Materialize two ``torch.utils.data.Dataset``s of ``(x, y)`` pairs; integer labels make a
    classification problem (``num_classes`` defaults to max label + 1), float ones a regression."""
    xtr, ytr = _stack(train)
    xte, yte = _stack(test)
    if ytr.dtype.is_floating_point:
        return Data(xtr, ytr.float(), xte, yte.float(), 0)
    nc = int(max(ytr.max(), yte.max())) + 1 if num_classes is None else num_classes
    return Data(xtr, ytr.long(), xte, yte.long(), nc)


def load_dataset(dataset, **kwargs) -> Data:
    """``dataset``: a name in :data:`DATASETS`, a :class:`Data`, a ``(train, test)`` pair of torch
    Datasets, or a zero-argument callable returning one of these."""
    if isinstance(dataset, str):
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; available: {', '.join(sorted(DATASETS))}"
                             " (or pass a torch Dataset pair / a callable)")
        return DATASETS[dataset](**kwargs)
    if callable(dataset) and not isinstance(dataset, (Data, tuple)):
        dataset = dataset(**kwargs)
    if isinstance(dataset, Data):
        return dataset
    if isinstance(dataset, tuple) and len(dataset) == 2:
        return from_torch(*dataset)
    raise TypeError(f"dataset must be a name, a Data, a (train, test) pair of torch Datasets or a "
                    f"callable returning one, got {type(dataset).__name__}")


def root_split(n: int, samples: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(root, rest)``: ``samples`` of the indices ``range(n)`` drawn by a generator seeded with
    ``seed`` (a server's root set, Cao et al., NDSS 2021), and the other indices; both sorted."""
    if not 0 <= samples < n:
        raise ValueError(f"server_root_samples must be in [0, {n}) for a training split of {n} "
                         f"samples, got server_root_samples={samples}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:samples].sort().values, perm[samples:].sort().values


PARTITIONS = ("iid", "dirichlet", "shards")


def partition(labels: torch.Tensor, workers: int, scheme: str = "iid", alpha: float = 1.0,
              shards_per_worker: int = 2, seed: int = 0) -> list[torch.Tensor]:
    """Split ``range(len(labels))`` among ``workers``; returns one sorted LongTensor each.

    Every worker gets at least one sample (Dirichlet draws are repeated until so, up to 100
    times). ``dirichlet`` and ``shards`` need class labels.
    """
    n = len(labels)
    if scheme not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, got partition={scheme!r}")
    if not 1 <= workers <= n:
        raise ValueError(f"partition: need 1 <= workers <= {n} samples, got workers={workers}")
    g = torch.Generator().manual_seed(seed)
    if scheme == "iid":
        perm = torch.randperm(n, generator=g)
        return [p.sort().values for p in perm.tensor_split(workers)]
    if labels.dtype.is_floating_point:
        raise ValueError(f"partition={scheme!r} needs class labels; this dataset is a regression "
                         f"(use partition='iid')")
    if scheme == "shards":
        if shards_per_worker < 1:
            raise ValueError(f"shards: shards_per_worker must be >= 1, got {shards_per_worker}")
        n_shards = workers * shards_per_worker
        if n_shards > n:
            raise ValueError(f"shards: {n_shards} shards for {n} samples; lower shards_per_worker")
        # stable sort by label after a seeded shuffle: shards are label-pure but not index-ordered
        perm = torch.randperm(n, generator=g)
        order = perm[torch.sort(labels[perm], stable=True).indices]
        shards = order.tensor_split(n_shards)
        assign = torch.randperm(n_shards, generator=g).view(workers, shards_per_worker)
        return [torch.cat([shards[s] for s in row.tolist()]).sort().values for row in assign]
    if not alpha > 0:
        raise ValueError(f"dirichlet: alpha must be > 0, got alpha={alpha}")
    rng = np.random.default_rng(seed)
    classes = torch.unique(labels).tolist()
    by_class = [torch.nonzero(labels == c).flatten() for c in classes]
    for _ in range(100):
        parts = [[] for _ in range(workers)]
        for idx in by_class:
            idx = idx[torch.randperm(len(idx), generator=g)]
            props = rng.dirichlet(np.full(workers, alpha))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int).tolist()
            for w, chunk in enumerate(idx.tensor_split(cuts)):
                parts[w].append(chunk)
        out = [torch.cat(p).sort().values for p in parts]
        if min(len(p) for p in out) > 0:
            return out
    raise ValueError(f"dirichlet: alpha={alpha} left a worker without data in 100 draws; "
                     f"raise alpha or lower workers={workers}")
