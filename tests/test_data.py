"""fastnoise.data: the embedded digits set, the canonical IDX / CIFAR-pickle readers on files written
here, deterministic splits, loaders, augmentation and the errors."""
import gzip
import os
import pickle

import numpy as np
import pytest
import torch

import fastnoise.data as fd
from fastnoise.data._formats import write_idx


def _idx_folder(path, n_train=30, n_test=12, size=28, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    path.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        write_idx(path / (name + (".gz" if gz else "")), a)
    return arrays


def _cifar_folder(root, name, n_per_file=10, seed=0):
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, files, key, classes = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10
    else:
        folder, files, key, classes = root / "cifar-100-python", ["train", "test"], b"fine_labels", 100
    folder.mkdir(parents=True)
    out = {}
    for f in files:
        data = rng.integers(0, 256, (n_per_file, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, n_per_file).tolist()
        with open(folder / f, "wb") as fh:  # the canonical files: python-2 style pickles with bytes keys
            pickle.dump({b"batch_label": f.encode(), b"data": data, key: labels}, fh, protocol=2)
        out[f] = (data, labels)
    return out


def test_digits_shapes_range_and_deterministic_splits():
    s = fd.load("digits")
    assert (s.num_classes, s.input_shape, s.default_eps) == (10, (1, 8, 8), 0.2)
    assert len(s.train) + len(s.val) + len(s.test) == 1797 and len(s.test) == 359 and len(s.val) == 143
    x, y = s.train[0]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8) and y.dtype == torch.int64
    xa, ya = s.train.tensors()
    assert 0 <= float(xa.min()) and float(xa.max()) == 1.0
    # disjoint: no image of val or test equals one of train at the same label set sizes
    s2 = fd.load("digits")
    assert torch.equal(s.val.tensors()[0], s2.val.tensors()[0]) and torch.equal(s.test.tensors()[1], s2.test.tensors()[1])
    s3 = fd.load("digits", seed=1)  # another val carve, same test split
    assert torch.equal(s.test.tensors()[0], s3.test.tensors()[0])
    assert not torch.equal(s.val.tensors()[0], s3.val.tensors()[0])
    assert len(s.mean) == len(s.std) == 1 and s.std[0] > 0


def test_synthetic_is_small_and_separable():
    s = fd.load("synthetic")
    assert (len(s.train), len(s.val), len(s.test), s.num_classes) == (512, 128, 128, 4)
    x, y = s.train.tensors()
    # nearest class mean classifies the test set perfectly
    means = torch.stack([x[y == c].mean(0) for c in range(4)])
    xt, yt = s.test.tensors()
    pred = ((xt[:, None] - means[None]) ** 2).flatten(2).sum(-1).argmin(1)
    assert bool((pred == yt).all())


@pytest.mark.parametrize("name,sub,gz", [("mnist", "", True), ("mnist", "MNIST/raw", False),
                                         ("fashion-mnist", "fashion-mnist", True)])
def test_idx_loader_reads_canonical_files(tmp_path, name, sub, gz):
    arrays = _idx_folder(tmp_path / sub if sub else tmp_path, n_train=50, gz=gz)
    s = fd.load(name, tmp_path)
    assert s.input_shape == (1, 28, 28) and s.num_classes == 10
    assert len(s.train) + len(s.val) == 50 and len(s.val) == 5 and len(s.test) == 12
    xt, yt = s.test.tensors()
    want = torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float()[:, None] / 255
    assert torch.allclose(xt, want) and torch.equal(yt, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    # every train image is in train or val, exactly once
    xs = torch.cat([s.train.tensors()[0], s.val.tensors()[0]])
    assert xs.shape[0] == 50 and torch.allclose(xs.sum(), torch.from_numpy(arrays["train-images-idx3-ubyte"]).double().sum().float() / 255, rtol=1e-5)
    assert s.default_eps == (0.3 if name == "mnist" else 0.1)


def test_idx_reader_rejects_garbage(tmp_path):
    _idx_folder(tmp_path)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"not an idx file")
    with pytest.raises(ValueError, match="IDX"):
        fd.load("mnist", tmp_path)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loader_reads_canonical_pickles(tmp_path, name):
    written = _cifar_folder(tmp_path, name)
    s = fd.load(name, tmp_path)
    assert s.input_shape == (3, 32, 32) and s.num_classes == (10 if name == "cifar10" else 100)
    assert s.default_eps == pytest.approx(8 / 255) and s.default_alpha == pytest.approx(2 / 255) and s.default_steps == 10
    n_train = 50 if name == "cifar10" else 10
    assert len(s.train) + len(s.val) == n_train and len(s.test) == 10
    data, labels = written["test_batch" if name == "cifar10" else "test"]
    xt, yt = s.test.tensors()
    assert torch.allclose(xt, torch.from_numpy(data).float().view(-1, 3, 32, 32) / 255)
    assert yt.tolist() == labels
    assert s.augment is not None
    # the folder itself may be given as root
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    assert len(fd.load(name, tmp_path / folder).test) == 10


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    _cifar_folder(tmp_path, "cifar10")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, fh)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        fd.load("cifar10", tmp_path)


@pytest.mark.parametrize("name,what", [("mnist", "train-images-idx3-ubyte.gz"), ("fashion-mnist", "t10k-labels-idx1-ubyte.gz"),
                                       ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_data_names_folder_and_files(tmp_path, name, what):
    with pytest.raises(FileNotFoundError) as e:
        fd.load(name, tmp_path / "nothing")
    assert what in str(e.value) and str(tmp_path / "nothing") in str(e.value)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"dataset must be one of \['digits', 'mnist', 'fashion-mnist', 'cifar10', 'cifar100', 'synthetic'\]"):
        fd.load("imagenet")


def test_loaders_batches_cover_train_once_and_reshuffle_per_epoch():
    s = fd.load("synthetic")
    tr, va, te = fd.loaders(s, 100)
    ys = []
    for epoch in (0, 1):
        tr.sampler.set_epoch(epoch)
        batches = list(tr)
        assert [len(b[1]) for b in batches] == [100] * 5 + [12]
        assert batches[0][0].shape == (100, 1, 8, 8) and batches[0][0].dtype == torch.float32
        ys.append(torch.cat([b[1] for b in batches]))
        assert torch.equal(ys[-1].sort().values, s.train.tensors()[1].sort().values)
    assert not torch.equal(ys[0], ys[1])
    tr.sampler.set_epoch(0)
    assert torch.equal(torch.cat([b[1] for b in tr]), ys[0])  # reproducible
    assert torch.equal(torch.cat([b[1] for b in te]), s.test.tensors()[1])  # in order
    with pytest.raises(ValueError, match="batch_size"):
        fd.loaders(s, 0)
    with pytest.raises(ValueError, match="process group"):
        fd.loaders(s, 8, distributed=True)


def test_random_crop_flip():
    x = torch.rand(16, 3, 8, 8)
    aug = fd.RandomCropFlip(4)
    a = aug(x, torch.Generator().manual_seed(0))
    b = aug(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(1)))
    assert torch.equal(fd.RandomCropFlip(0, flip=False)(x), x)
    flipped = fd.RandomCropFlip(0, flip=True)(x, torch.Generator().manual_seed(3))
    for i in range(16):  # each image is itself or its mirror image
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    # a crop is a shifted window of the zero-padded image: every value comes from x or is 0
    vals = set(x.flatten().tolist()) | {0.0}
    assert set(a.flatten().tolist()) <= vals
    assert aug(torch.empty(0, 3, 8, 8)).shape == (0, 3, 8, 8)
