"""Data sets: ``fastnoise.data.load(name, root=None, *, seed=0) -> Splits`` and ``loaders(...)``.

Names (`names()`):

* ``"digits"``: scikit-learn's bundled 8x8 digits (1797 images, values scaled to [0, 1]); embedded,
  no download. Test split: a fixed 20% (seed 0); val: 10% of the rest, carved with `seed`.
* ``"mnist"`` / ``"fashion-mnist"``: a folder with the canonical IDX files
  ``train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz
  t10k-labels-idx1-ubyte.gz`` (``.gz`` or uncompressed), looked up in `root`, ``root/MNIST/raw``
  (``root/FashionMNIST/raw``) or ``root/mnist`` (``root/fashion-mnist``). Val: 5000 from train.
* ``"cifar10"`` / ``"cifar100"``: the canonical python pickle folders ``root/cifar-10-batches-py``
  (data_batch_1..5, test_batch) and ``root/cifar-100-python`` (train, test). Val: 1000 from train
  (the hold-out of Rice et al.'s early stopping). Train augmentation: random crop (pad 4) + flip.
* ``"synthetic"``: a small random, well separated set (1x8x8, 4 classes) for tests.

`root` defaults to ``$FASTNOISE_DATA`` or ``./data``. Every data set yields ``(x float32 [C,H,W] in
[0,1], y int64)``; the model normalizes internally with ``Splits.mean``/``std``. Splits are
deterministic: the test split is the canonical one, val is carved from train with a fixed seed.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ._formats import cifar_arrays, read_cifar_pickle, read_idx

__all__ = ["Splits", "ArrayDataset", "RandomCropFlip", "GlobalBatchSampler", "set_epoch", "load", "loaders", "names", "default_root"]

_PathLike = Union[str, os.PathLike]


class ArrayDataset(Dataset):
    """Images kept as one tensor (uint8 or float32 [N,C,H,W]); items are ``(float32 x in [0,1], int64 y)``.

    Implements ``__getitems__`` so that a DataLoader fetches a whole batch with one index operation
    (use `loaders`, whose collate function accepts those batches).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
        self.x, self.y, self.scale = x, y.to(torch.int64), float(scale)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def _convert(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        return x * self.scale if self.scale != 1.0 else x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._convert(self.x[i]), self.y[i]

    def __getitems__(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(list(idx), dtype=torch.int64)
        return self._convert(self.x[idx]), self.y[idx]

    def subset(self, idx: torch.Tensor) -> "ArrayDataset":
        return ArrayDataset(self.x[idx], self.y[idx], self.scale)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All of it as (x float32 [N,C,H,W], y int64 [N])."""
        return self._convert(self.x), self.y


class RandomCropFlip:
    """Train augmentation on a batch: zero-pad `padding`, random crop back to H x W, random horizontal flip.

    ``aug(x [B,C,H,W], generator) -> x``: the random choices come from `generator` (a CPU
    torch.Generator), so a run is reproducible and resumable. Distributed: ``aug(x, generator, rank=r,
    world=N)`` draws the choices of the global batch (B * N rows) and applies rows r::N, the rows of the
    global batch this rank holds: N ranks augment as one process with the global batch does.
    """

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        self.padding, self.flip = int(padding), bool(flip)

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None, *, rank: int = 0,
                 world: int = 1, total: Optional[int] = None) -> torch.Tensor:
        """`total`: the size of the global batch (default B * world; the last batch of an epoch can be
        smaller, and uneven across ranks)."""
        if x.ndim != 4:
            raise ValueError(f"x must be a batch [B,C,H,W], got shape {tuple(x.shape)}")
        if not (isinstance(world, int) and isinstance(rank, int) and 0 <= rank < world):
            raise ValueError(f"rank and world must be ints with 0 <= rank < world, got rank={rank!r}, world={world!r}")
        b, c, h, w = x.shape
        total = b * world if total is None else int(total)
        if len(range(rank, total, world)) != b:
            raise ValueError(f"x has {b} rows, but rank {rank} of {world} holds {len(range(rank, total, world))} "
                             f"rows of a global batch of {total}")
        if b == 0:
            return x

        def mine(t: torch.Tensor) -> torch.Tensor:  # this rank's rows of the global batch's draws
            return t[rank::world].to(x.device)

        p = self.padding
        if p > 0:
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            oy = mine(torch.randint(0, 2 * p + 1, (total,), generator=generator))
            ox = mine(torch.randint(0, 2 * p + 1, (total,), generator=generator))
            rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            bi = torch.arange(b, device=x.device)[:, None, None, None]
            ci = torch.arange(c, device=x.device)[None, :, None, None]
            x = padded[bi, ci, rows, cols]
        if self.flip:
            mask = mine(torch.rand(total, generator=generator) < 0.5)[:, None, None, None]
            x = torch.where(mask, x.flip(-1), x)
        return x

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"


@dataclasses.dataclass
class Splits:
    """A data set split three ways, with what a model and an attack need to know about it.

    `default_eps` / `default_alpha` / `default_steps`: the L-inf budget, PGD step and PGD steps of
    the usual training attack for this data set. `augment`: train-time batch augmentation
    ``augment(x, generator) -> x`` or None.
    """
    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_eps: float
    default_alpha: float
    default_steps: int
    augment: Optional[Callable[..., torch.Tensor]] = None

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_shape[1], self.input_shape[2]


def default_root() -> Path:
    return Path(os.environ.get("FASTNOISE_DATA", "data"))


def _carve(n: int, n_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices): a seeded permutation; each part kept in ascending order."""
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def _make(name: str, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
          scale: float, n_val: int, seed: int, num_classes: int, mean: Sequence[float], std: Sequence[float],
          eps: float, steps: int, augment=None) -> Splits:
    full = ArrayDataset(x_train, y_train, scale)
    tr, va = _carve(len(full), n_val, seed)
    return Splits(name=name, train=full.subset(tr), val=full.subset(va), test=ArrayDataset(x_test, y_test, scale),
                  num_classes=num_classes, input_shape=tuple(int(s) for s in x_train.shape[1:]),
                  mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std), default_eps=float(eps),
                  default_alpha=2.5 * float(eps) / steps, default_steps=int(steps), augment=augment)


def _stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    x = x.to(torch.float64)
    dims = [0, 2, 3]
    return x.mean(dims).tolist(), x.std(dims).clamp_min(1e-3).tolist()


def _digits(root, seed: int) -> Splits:
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(d.target.astype(np.int64))
    rest, test = _carve(len(y), len(y) // 5, 0)  # fixed test split, independent of `seed`
    mean, std = _stats(x[rest])
    return _make("digits", x[rest], y[rest], x[test], y[test], 1.0, len(rest) // 10, seed, 10, mean, std,
                 eps=0.2, steps=10)


def _synthetic(root, seed: int, n_train: int = 640, n_test: int = 128, classes: int = 4) -> Splits:
    g = torch.Generator().manual_seed(1234)
    protos = (torch.rand(classes, 1, 8, 8, generator=g) > 0.5).float() * 0.6 + 0.2
    y = torch.arange(n_train + n_test) % classes
    y = y[torch.randperm(len(y), generator=g)]
    x = (protos[y] + 0.1 * torch.randn(len(y), 1, 8, 8, generator=g)).clamp(0, 1)
    mean, std = _stats(x[:n_train])
    return _make("synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 1.0, n_test, seed, classes,
                 mean, std, eps=0.1, steps=5)


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _find_idx(root: Path, subdirs: Sequence[str], name: str) -> list[Path]:
    folders = [root] + [root / s for s in subdirs]
    for folder in folders:
        found = []
        for f in _IDX_FILES:
            cand = [folder / (f + ".gz"), folder / f]
            hit = next((c for c in cand if c.is_file()), None)
            if hit is None:
                break
            found.append(hit)
        else:
            return found
    raise FileNotFoundError(
        f"{name}: the IDX files {', '.join(f + '.gz' for f in _IDX_FILES)} were not found in "
        f"{' or '.join(str(f) for f in folders)}. Download them into one of those folders "
        f"(or pass root= / --data-root / set FASTNOISE_DATA).")


def _idx_set(name: str, subdirs: Sequence[str], mean: float, std: float, eps: float, steps: int):
    def load_fn(root: Path, seed: int) -> Splits:
        xtr, ytr, xte, yte = (read_idx(p) for p in _find_idx(root, subdirs, name))
        for what, xs, ys in (("train", xtr, ytr), ("test", xte, yte)):
            if xs.ndim != 3 or ys.ndim != 1 or xs.shape[0] != ys.shape[0]:
                raise ValueError(f"{name}: {what} images must be [N,H,W] with N labels, got {xs.shape} and {ys.shape}")
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        n_val = min(5000, len(ytr) // 10)
        return _make(name, t(xtr)[:, None], t(ytr.astype(np.int64)), t(xte)[:, None], t(yte.astype(np.int64)),
                     1.0 / 255, n_val, seed, 10, [mean], [std], eps=eps, steps=steps)
    return load_fn


_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10,
                (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100,
                 (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _cifar_set(name: str):
    folder_name, train_files, test_files, label_key, classes, mean, std = _CIFAR[name]

    def load_fn(root: Path, seed: int) -> Splits:
        folder = root if root.name == folder_name else root / folder_name
        missing = [f for f in train_files + test_files if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{name}: expected the python-pickle folder {folder} with files {', '.join(train_files + test_files)}; "
                f"missing: {', '.join(missing)}. Extract the canonical {folder_name} archive under {root} "
                f"(or pass root= / --data-root / set FASTNOISE_DATA).")

        def read(files):
            parts = [cifar_arrays(read_cifar_pickle(folder / f), label_key, folder / f) for f in files]
            return (torch.from_numpy(np.concatenate([p[0] for p in parts])),
                    torch.from_numpy(np.concatenate([p[1] for p in parts])))
        xtr, ytr = read(train_files)
        xte, yte = read(test_files)
        return _make(name, xtr, ytr, xte, yte, 1.0 / 255, min(1000, len(ytr) // 10), seed, classes, mean, std,
                     eps=8 / 255, steps=10, augment=RandomCropFlip(4))
    return load_fn


_LOADERS: dict[str, Callable[[Path, int], Splits]] = {
    "digits": _digits,
    "mnist": _idx_set("mnist", ["MNIST/raw", "mnist"], 0.1307, 0.3081, eps=0.3, steps=40),
    "fashion-mnist": _idx_set("fashion-mnist", ["FashionMNIST/raw", "fashion-mnist"], 0.2860, 0.3530, eps=0.1, steps=20),
    "cifar10": _cifar_set("cifar10"),
    "cifar100": _cifar_set("cifar100"),
    "synthetic": _synthetic,
}


def names() -> list[str]:
    return list(_LOADERS)


def load(name: str, root: Optional[_PathLike] = None, *, seed: int = 0) -> Splits:
    """Load data set `name` (one of `names()`) from `root` (default ``$FASTNOISE_DATA`` or ``./data``).

    `seed` fixes the val split carved from train. Missing files raise FileNotFoundError naming the
    expected folder and files; an unknown name raises ValueError listing the valid names.
    """
    if name not in _LOADERS:
        raise ValueError(f"dataset must be one of {names()}, got {name!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    return _LOADERS[name](Path(root) if root is not None else default_root(), seed)


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Batches of one rank such that N ranks iterate the global batches of one process (a batch sampler).

    Epoch e: the permutation of one process (``randperm(n)`` of a generator seeded ``seed + e``, as
    `DistributedSampler` with one replica) cut into global batches of `global_batch`; at step k rank r
    gets rows r::N of global batch k. Nothing is padded or dropped (DistributedSampler repeats samples to
    make the shards equal, so N ranks would not see one process's data): the last batch of an epoch may
    be smaller and uneven across ranks, even empty on some (every rank still takes the step, so the
    collectives match); the training loop weights each rank's loss by its share (`fastnoise.train.loop`).
    """

    def __init__(self, n: int, global_batch: int, rank: int, world: int, seed: int = 0) -> None:
        if global_batch % world:
            raise ValueError(f"global_batch must be divisible by the world size {world}, got {global_batch}")
        self.n, self.global_batch, self.rank, self.world, self.seed, self.epoch = n, global_batch, rank, world, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        for start in range(0, self.n, self.global_batch):
            yield perm[start:start + self.global_batch][self.rank::self.world].tolist()

    def __len__(self) -> int:
        return -(-self.n // self.global_batch)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Start epoch `epoch` of a train loader of `loaders` (its sampler or batch sampler reshuffles)."""
    for s in (loader.batch_sampler, loader.sampler):
        if hasattr(s, "set_epoch"):
            s.set_epoch(epoch)
            return
    raise TypeError("loader has no sampler with set_epoch (build it with fastnoise.data.loaders)")


def _collate(batch):
    """Batches from ``ArrayDataset.__getitems__`` are already (x, y); anything else: default collate."""
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        return batch
    return torch.utils.data.default_collate(batch)


def loaders(splits: Splits, batch_size: int, *, seed: int = 0, distributed: bool = False,
            workers: int = 0) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train_loader, val_loader, test_loader) yielding ``(x [B,C,H,W] float32, y [B] int64)``.

    `batch_size` is per process. The train loader shuffles with a `DistributedSampler` seeded by
    `seed` (one replica), or when `distributed` with a `GlobalBatchSampler` (rank r of N gets rows
    r::N of each global batch of ``batch_size * N`` in the one-process order): call
    ``fastnoise.data.set_epoch(train_loader, epoch)`` each epoch for a fresh, reproducible order. Val and test
    loaders are in order and unsharded. Augmentation is not applied here (see ``Splits.augment``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    if distributed:
        import torch.distributed as dist
        if not dist.is_initialized():
            raise ValueError("distributed=True needs an initialized torch.distributed process group")
        replicas, rank = dist.get_world_size(), dist.get_rank()
    else:
        replicas, rank = 1, 0
    kw = dict(num_workers=workers, collate_fn=_collate, persistent_workers=workers > 0)
    if replicas > 1:
        train = DataLoader(splits.train, batch_sampler=GlobalBatchSampler(len(splits.train), batch_size * replicas,
                                                                          rank, replicas, seed), **kw)
    else:
        sampler = DistributedSampler(splits.train, num_replicas=1, rank=0, shuffle=True, seed=seed)
        train = DataLoader(splits.train, batch_size=batch_size, sampler=sampler, **kw)
    val = DataLoader(splits.val, batch_size=batch_size, shuffle=False, **kw)
    test = DataLoader(splits.test, batch_size=batch_size, shuffle=False, **kw)
    return train, val, test
