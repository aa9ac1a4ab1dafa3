"""Datasets, partitions and models of the training loop."""
import pytest
import torch

from robustagg.run import data, models


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits")


def test_digits_shapes_and_split(digits):
    assert digits.x_train.shape == (1438, 64) and digits.x_test.shape == (359, 64)
    assert digits.num_classes == 10 and digits.x_train.dtype == torch.float32
    assert 0.0 <= float(digits.x_train.min()) and float(digits.x_train.max()) <= 1.0
    # same split seed, same split
    again = data.digits()
    assert torch.equal(again.y_test, digits.y_test)


@pytest.mark.parametrize("scheme", data.PARTITIONS)
def test_partition_covers_each_index_once(digits, scheme):
    parts = data.partition(digits.y_train, 10, scheme, alpha=0.3, seed=4)
    allidx = torch.cat(parts)
    assert len(parts) == 10 and min(len(p) for p in parts) > 0
    assert torch.equal(allidx.sort().values, torch.arange(len(digits.y_train)))
    assert all(torch.equal(a, b) for a, b in
               zip(parts, data.partition(digits.y_train, 10, scheme, alpha=0.3, seed=4)))


def test_non_iid_partitions_are_skewed(digits):
    def classes(parts):
        return [len(torch.unique(digits.y_train[p])) for p in parts]

    assert min(classes(data.partition(digits.y_train, 10, "iid", seed=0))) == 10
    # two label-sorted shards per worker: at most 2 + 2 classes (a shard may straddle a boundary)
    assert max(classes(data.partition(digits.y_train, 10, "shards", seed=0))) <= 4
    # Dir(0.1): most of a worker's data from few classes
    parts = data.partition(digits.y_train, 10, "dirichlet", alpha=0.1, seed=0)
    top = [torch.bincount(digits.y_train[p], minlength=10).max().item() / len(p) for p in parts]
    assert sum(top) / len(top) > 0.5


def test_partition_errors(digits):
    with pytest.raises(ValueError, match="partition must be one of"):
        data.partition(digits.y_train, 3, "random")
    with pytest.raises(ValueError, match="regression"):
        data.partition(torch.randn(50), 3, "dirichlet")
    with pytest.raises(ValueError, match="workers"):
        data.partition(digits.y_train, 0)


def test_synthetic_is_learnable_and_seeded():
    d = data.synthetic(features=5, samples=400, task="linear", noise=0.0)
    w = torch.linalg.lstsq(d.x_train, d.y_train.unsqueeze(1)).solution.squeeze(1)
    assert torch.allclose(d.x_test @ w, d.y_test, atol=1e-4) and d.num_classes == 0
    assert torch.equal(data.synthetic(features=5).x_train, data.synthetic(features=5).x_train)


def test_missing_files_say_where(tmp_path):
    with pytest.raises(ValueError, match="root"):
        data.load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        data.load_dataset("fashion_mnist", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        data.load_dataset("cifar10", root=str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        data.load_dataset("imagenet")


def test_idx_reader_matches_written_file(tmp_path):
    import gzip

    imgs = torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8)
    labels = torch.tensor([1, 0, 2], dtype=torch.uint8)
    for stem, arr in [("train-images-idx3-ubyte", imgs), ("t10k-images-idx3-ubyte", imgs),
                      ("train-labels-idx1-ubyte", labels), ("t10k-labels-idx1-ubyte", labels)]:
        header = bytes([0, 0, 8, arr.dim()]) + b"".join(s.to_bytes(4, "big") for s in arr.shape)
        with gzip.open(tmp_path / f"{stem}.gz", "wb") as fh:
            fh.write(header + arr.numpy().tobytes())
    d = data.load_dataset("mnist", root=str(tmp_path))
    assert torch.equal(d.x_train, imgs.reshape(3, 16).float() / 255) and d.y_test.tolist() == [1, 0, 2]


def test_torch_dataset_pair():
    tr = torch.utils.data.TensorDataset(torch.randn(20, 3), torch.arange(20) % 4)
    d = data.load_dataset((tr, tr))
    assert d.num_classes == 4 and d.x_train.shape == (20, 3)


@pytest.mark.parametrize("name,params", [("logreg", 650), ("mlp", 64 * 64 + 64 + 650), ("cnn", None)])
def test_models(name, params):
    net = models.build_model(name, (64,), 10, seed=1)
    out = net(torch.rand(5, 64))
    assert out.shape == (5, 10)
    if params is not None:
        assert sum(p.numel() for p in net.parameters()) == params
    same = models.build_model(name, (64,), 10, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), same.parameters()))


def test_model_factory_and_errors():
    net = models.build_model(lambda shape, k: torch.nn.Linear(shape[0], k), (3,), 2)
    assert isinstance(net, torch.nn.Linear)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        models.build_model("resnet", (3,), 2)
    with pytest.raises(ValueError, match="not a square"):
        models.build_model("cnn", (30,), 2)


def test_models_built_in_threads_at_once_equal_those_built_alone():
    # torch's global generator is one per process; two runs building their models side by side
    # (threads of one process) must each get the model of their own seed.
    import threading

    def flat(seed):
        return torch.nn.utils.parameters_to_vector(
            models.build_model("mlp", (64,), 10, seed=seed, hidden=(256,)).parameters()).detach()

    alone = {s: flat(s) for s in range(8)}
    built, barrier = {}, threading.Barrier(8)

    def build(seed):
        barrier.wait()
        for _ in range(20):
            built.setdefault(seed, []).append(flat(seed))

    threads = [threading.Thread(target=build, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for s in range(8):
        assert len(built[s]) == 20 and all(torch.equal(p, alone[s]) for p in built[s])
