"""The training loop: recipes (fastnoise.adversarial.RECIPES), method hooks, early stopping, checkpoints, resume, DDP.

Reproducibility: every source of randomness is a pure function of (seed, epoch, step, rank): the data
order (DistributedSampler seeded by ``seed``, ``set_epoch``), augmentation and the attacks' random
starts (generators seeded per epoch / step; both drawn for the global batch, each rank taking its rows
rank::world), torch / numpy / python / fastnoise global RNGs (re-seeded
at each epoch start), and the noise streams of the layers (saved in the state_dict). A resumed run
therefore ends bit-identical to an uninterrupted one on CPU. The attack's random start is drawn for
the whole global batch and each rank takes its rows, so N ranks x B/N give the same attack as one
process with batch B; BatchNorm layers use the moments of the global batch (`fastnoise.train.syncbn`).
"""
from __future__ import annotations

import collections
import os
import random
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import data as fndata
from .. import methods as fnmethods
from ..adversarial import attack_mode, get_recipe, noisy_fgsm, pgd, uniform_rows  # noqa: F401  (public names)
from . import checkpoint as ckpt
from . import rundir, syncbn
from .config import TrainConfig
from .hooks import HookList, Hooks

_MASK63 = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 chain): distinct, reproducible streams per (seed, epoch, ...)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        h = (h + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = h
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        h = z ^ (z >> 31)
    return h & _MASK63


def seed_everything(seed: int) -> None:
    from .. import rng as fnrng
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
    random.seed(seed)
    fnrng.manual_seed(seed)


# ---- attacks used for training and validation: fastnoise/adversarial.py (below the methods) ---------

_uniform_rows = uniform_rows  # the earlier private name

@torch.no_grad()
def _count(model, x, y) -> int:
    return int((model(x).argmax(1) == y).sum())


def evaluate(model: torch.nn.Module, loader, eps: float, alpha: float, steps: int, *, max_samples: Optional[int] = None,
             seed: int = 0, device: Optional[torch.device] = None) -> dict:
    """Clean and PGD-`steps` (random start) accuracy of `model` as deployed (eval mode, noise modes kept).

    At eps 0 no perturbation exists: the robust accuracy is the clean accuracy (no attack is run)."""
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    n = clean = robust = 0
    try:
        for i, (x, y) in enumerate(loader):
            if max_samples is not None and n >= max_samples:
                break
            if max_samples is not None:
                x, y = x[: max_samples - n], y[: max_samples - n]
            x, y = x.to(device), y.to(device)
            clean += _count(model, x, y)
            if steps > 0 and eps > 0:
                start = uniform_rows(x.shape, mix_seed(seed, 7, i), 0, 1, x.device)
                robust += _count(model, pgd(model, x, y, eps, alpha, steps, start), y)
            n += len(y)
    finally:
        model.train(was)
    robust_acc = (robust / max(n, 1)) if steps > 0 and eps > 0 else (clean / max(n, 1) if eps == 0 else None)
    return {"n": n, "clean": clean / max(n, 1), "robust": robust_acc}


# ---- distributed ----------------------------------------------------------------------------------

class _Dist:
    def __init__(self, config: TrainConfig) -> None:
        import torch.distributed as dist
        self.owned = False
        if not config.distributed and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
            raise RuntimeError(f"launched with WORLD_SIZE={os.environ['WORLD_SIZE']} (torchrun) but distributed is "
                               f"false: pass --distributed (every rank would train alone and write {config.out_dir})")
        if config.distributed:
            if not dist.is_initialized():
                missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
                if missing:
                    raise RuntimeError(f"distributed=True needs a process group: launch with torchrun "
                                       f"(environment variables {missing} are not set)")
                cuda = _wants_cuda(config.device)
                if cuda:
                    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
                dist.init_process_group("nccl" if cuda else "gloo", init_method="env://")
                self.owned = True
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world = 0, 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0)) if config.distributed else 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def close(self) -> None:
        if self.owned:
            import gc

            import torch.distributed as dist
            # free the DDP wrapper (its reducer holds gloo work objects) while the group and the interpreter are
            # alive: left to interpreter shutdown it aborted rank 1 ("terminate called without an active
            # exception", exit -6) in 2 of 63 2-rank trainings on the Zen 5 VM, 0 of 100 with this collect
            gc.collect()
            dist.destroy_process_group()


def _wants_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def _device(config: TrainConfig, d: _Dist) -> torch.device:
    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device={config.device!r} but CUDA is not available (torch {torch.__version__})")
    if config.distributed and config.device in ("auto", "cuda"):
        return torch.device("cuda", d.local_rank)
    return torch.device(config.device if config.device != "auto" else "cuda")


def _stream_buffers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    from ..rng import PhiloxStream
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PhiloxStream)]


def shift_streams(model: torch.nn.Module, delta: int) -> None:
    """Add `delta` to the seed of every noise stream of `model` (per-rank streams: seed + rank)."""
    if delta:
        with torch.no_grad():
            for _, m in _stream_buffers(model):
                m.state[0] = (int(m.state[0]) + delta) & _MASK63


# ---- the loop -------------------------------------------------------------------------------------

def model_spec(config: TrainConfig, splits: fndata.Splits) -> dict:
    name, options = config.resolved_model()
    return {"name": name, "num_classes": splits.num_classes, "in_channels": splits.in_channels,
            "input_size": list(splits.input_size), "mean": list(splits.mean), "std": list(splits.std),
            "options": options}


def build_model(config: TrainConfig, splits: fndata.Splits) -> torch.nn.Module:
    """The architecture of `config` for `splits`, converted with ``config.method`` (seeded by config.seed)."""
    torch.manual_seed(config.seed)
    return ckpt.build_from_spec(model_spec(config, splits), config.method, config.method_options)


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor, world: int, global_batch: int) -> torch.Tensor:
    """The loss whose DDP gradient mean is the gradient of the global batch's mean cross-entropy: the mean
    in one process; with N ranks, sum(local) * N / global_batch (the last batch of an epoch is uneven
    across ranks: `fastnoise.data.GlobalBatchSampler`)."""
    if world == 1:
        return F.cross_entropy(logits, y)
    return F.cross_entropy(logits, y, reduction="sum") * (world / global_batch)


def _score(v: Optional[float]) -> float:
    """Early-stopping score of a validation accuracy (None: no attack was run, never an improvement)."""
    return -1.0 if v is None else float(v)


def _fmt(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _progress(iterable, quiet: bool, rank: int, **kw):
    disable = quiet or rank != 0 or not sys.stderr.isatty()
    if disable:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, leave=False, dynamic_ncols=True, **kw)


def _check_finite(loss: torch.Tensor, epoch: int, step: int, optimizer) -> None:
    if not torch.isfinite(loss.detach()):
        raise FloatingPointError(f"training loss is {loss.item()} at epoch {epoch + 1} step {step}: "
                                 f"lower lr (now {optimizer.param_groups[0]['lr']})")


def fit(config: TrainConfig, hooks: Optional[Hooks] = None, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Load the data set, build (and convert) the model, train it per `config`; see `train_model`.

    With ``config.distributed`` and no process group yet, one is created from the torchrun environment
    (nccl on GPUs, gloo on CPUs) and destroyed at the end.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    d = _Dist(config)
    try:
        splits = fndata.load(config.dataset, config.data_root, seed=config.seed)
        model = build_model(config, splits)
        result = train_model(model, splits, config, hooks, resume=resume, overwrite=overwrite)
        d.barrier()  # every rank done before any tears the process group down
        return result
    finally:
        d.close()


def train_model(model: torch.nn.Module, splits: fndata.Splits, config: TrainConfig, hooks: Optional[Hooks] = None,
                *, resume: bool = False, overwrite: bool = False) -> dict:
    """Train `model` on `splits` per `config`; checkpoints go to ``config.out_dir`` (rank 0 only).

    Returns a dict: out_dir, checkpoint (JSON path of the model returned: best with early_stop, else
    last), epochs, best_epoch, best_val_robust, test_clean / test_robust (PGD-`steps`, on rank 0 when
    ``test_eval``), test_attack, train_time_s, history (per-epoch metrics). `resume`: continue from
    ``out_dir/last`` (the config must match it except for RESUMABLE_CHANGES).

    The output folder is claimed before anything is trained (`fastnoise.train.rundir`): it must be
    writable, it is locked for the run (a concurrent run into it fails at once with `RunDirError`), and a
    folder that holds a run needs `resume` (continue it) or `overwrite` (delete its checkpoints first).
    """
    config.validate()
    d = _Dist(config)  # reuses the process group of fit() or of the caller
    with rundir.claim_distributed(Path(config.out_dir), resume=resume, overwrite=overwrite, rank=d.rank,
                                  world=d.world):
        return _train_model(model, splits, config, hooks, resume=resume)


def _train_model(model: torch.nn.Module, splits: fndata.Splits, config: TrainConfig, hooks: Optional[Hooks] = None,
                 *, resume: bool = False) -> dict:
    """`train_model` while the output folder is claimed."""
    config.validate()
    hooks = HookList(fnmethods.get(config.method).hooks(config), hooks)  # the method's, then the caller's
    recipe = get_recipe(config.resolved_recipe())
    d = _Dist(config)  # reuses the process group of fit() or of the caller
    device = _device(config, d)
    if config.batch_size % d.world:
        raise ValueError(f"batch_size (the global batch) must be divisible by the world size {d.world}, "
                         f"got {config.batch_size}")
    local_bs = config.batch_size // d.world
    eps, alpha, steps = config.attack_params(splits)
    spec = model_spec(config, splits)
    out = Path(config.out_dir)
    model.to(device)
    if d.world > 1:  # BatchNorm over the global batch: N ranks x B/N train what one process does with B
        model = syncbn.sync_batchnorm(model, device)
    train_loader, val_loader, test_loader = fndata.loaders(splits, local_bs, seed=config.seed,
                                                           distributed=d.world > 1, workers=config.workers)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.resolved_milestones(), config.lr_gamma)
    start_epoch, history, best = 0, [], {"epoch": None, "val_robust": -1.0}

    if resume:
        meta, weights, tensors = ckpt.read(out / "last.json", "cpu", state=True)
        saved = TrainConfig.from_dict(meta["config"])
        diff = saved.diff(config, ignore=TrainConfig.RESUMABLE_CHANGES)
        if diff:
            raise ValueError(f"cannot resume {out}: the config differs from the checkpoint's in {diff} "
                             f"(only {list(TrainConfig.RESUMABLE_CHANGES)} may change)")
        ckpt.load_weights(model, ckpt.to_device(weights, device), where=f"checkpoint {out / 'last.json'}")
        optimizer.load_state_dict(ckpt._join_optimizer(meta["optimizer"], {k: v.to(device) for k, v in tensors.items()}))
        scheduler.load_state_dict(ckpt._from_json(meta["scheduler"]))
        scheduler.milestones = collections.Counter(config.resolved_milestones())  # epochs may grow
        ckpt.restore_rng(meta["rng"], tensors)
        start_epoch, history, best = meta["epoch"], meta.get("history", []), meta.get("best", best)
    shift_streams(model, d.rank)  # checkpoints hold rank 0's streams; rank r uses seed + r

    net = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ignore = [f"{n}.state" if n else "state" for n, _ in _stream_buffers(model)]
        if ignore:  # per-rank noise streams: never broadcast them from rank 0
            DDP._set_params_and_buffers_to_ignore_for_model(model, ignore)
        net = DDP(model, device_ids=[device] if device.type == "cuda" else None)

    def save(name: str, epoch: int, with_state: bool) -> Path:
        shift_streams(model, -d.rank)
        try:
            return ckpt.save(out / name, model, config, spec, epoch=epoch, optimizer=optimizer if with_state else None,
                             scheduler=scheduler if with_state else None,
                             extra={"history": history, "best": best, "attack": {"eps": eps, "alpha": alpha, "steps": steps},
                                    "world_size": d.world})
        finally:
            shift_streams(model, d.rank)

    t0 = time.perf_counter()
    log = (lambda *a: None) if (config.quiet or d.rank != 0) else (lambda *a: print(*a, flush=True))
    if d.rank == 0:
        log(f"fastnoise train: {config.dataset} {spec['name']} method={config.method} recipe={recipe.name} "
            f"eps={eps:.4g} alpha={alpha:.4g} steps={steps} epochs={config.epochs} batch={config.batch_size} "
            f"x{d.world} device={device} out={out}" + (f" (resumed at epoch {start_epoch})" if resume else ""))
    for epoch in range(start_epoch, config.epochs):
        seed_everything(mix_seed(config.seed, epoch, d.rank))
        fndata.set_epoch(train_loader, epoch)
        # one generator for the global batch (rank 0's seed): each rank takes its rows (RandomCropFlip rank/world)
        aug_gen = torch.Generator().manual_seed(mix_seed(config.seed, epoch, 0, 1))
        model.train()
        te = time.perf_counter()
        tot_loss = torch.zeros((), dtype=torch.float64, device=device)
        tot_correct = torch.zeros((), dtype=torch.int64, device=device)
        n_seen = 0
        bar = _progress(train_loader, config.quiet, d.rank, desc=f"epoch {epoch + 1}/{config.epochs}")
        for step, (x, y) in enumerate(bar):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            gb = min(config.batch_size, len(splits.train) - step * config.batch_size)  # this step's global batch
            if config.augment and splits.augment is not None:
                x = splits.augment(x, aug_gen) if d.world == 1 else splits.augment(x, aug_gen, rank=d.rank,
                                                                                   world=d.world, total=gb)
            x_train = x
            hooks.before_attack(model)
            if recipe.attacks and eps > 0:
                noise = uniform_rows(x.shape, mix_seed(config.seed, epoch, step, 2), d.rank, d.world, device)
                with attack_mode(model):
                    x_train = recipe.generate(model, x, y, eps, alpha, steps, noise)
                hooks.resample_noise(model)
            step_out = hooks.update(model, net, optimizer, x, x_train, y)  # a method's own update (e.g. forward-only)
            if step_out is None:
                step_out = hooks.loss(net, x, x_train, y)  # a method's loss from clean + adversarial batches
                if step_out is not None:
                    loss, logits = step_out
                    if d.world > 1:  # a mean over this rank's rows -> its share of the global batch's mean
                        loss = loss * (len(y) * d.world / gb) if len(y) else logits.sum() * 0.0
                else:
                    logits = net(x_train)
                    loss = _cross_entropy(logits, y, d.world, gb)
                extra = hooks.extra_loss(model, x_train, y, logits)
                if extra is not None:
                    loss = loss + extra
                _check_finite(loss, epoch, step, optimizer)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            else:
                loss, logits = step_out
                _check_finite(loss, epoch, step, optimizer)
            hooks.after_step(model)
            tot_loss += loss.detach().double() * (len(y) if d.world == 1 else gb / d.world)
            tot_correct += (logits.detach().argmax(1) == y).sum()
            n_seen += len(y)
            if hasattr(bar, "set_postfix") and step % 10 == 0:
                bar.set_postfix(loss=f"{float(tot_loss) / max(n_seen, 1):.3f}",
                                acc=f"{int(tot_correct) / max(n_seen, 1):.3f}")
        lr_used = optimizer.param_groups[0]["lr"]
        scheduler.step()
        seen = torch.tensor(float(n_seen), dtype=torch.float64, device=device)
        totals = torch.stack([tot_loss, tot_correct.double(), seen])
        if d.world > 1:  # metrics over every rank's shard
            import torch.distributed as dist
            dist.all_reduce(totals)
        n_all = max(float(totals[2]), 1.0)
        metrics = {"epoch": epoch + 1, "lr": lr_used,
                   "train_loss": float(totals[0]) / n_all, "train_acc": float(totals[1]) / n_all,
                   "epoch_time_s": time.perf_counter() - te}
        if d.rank == 0 and config.early_stop:
            v = evaluate(model, val_loader, eps, alpha, steps, max_samples=config.val_samples,
                         seed=mix_seed(config.seed, 99), device=device)
            metrics.update(val_clean=v["clean"], val_robust=v["robust"])
        hooks.on_epoch_end(model, epoch + 1, metrics)
        history.append(metrics)
        if d.rank == 0:
            improved = config.early_stop and _score(metrics.get("val_robust")) > _score(best["val_robust"])
            if improved:
                best = {"epoch": epoch + 1, "val_robust": metrics["val_robust"]}
                save("best", epoch + 1, with_state=False)
            save("last", epoch + 1, with_state=True)
            val = (f" val clean {metrics['val_clean']:.4f} PGD {_fmt(metrics['val_robust'])}"
                   if config.early_stop else "")
            log(f"epoch {epoch + 1}/{config.epochs} loss {metrics['train_loss']:.4f} train acc {metrics['train_acc']:.4f}"
                f"{val} lr {metrics['lr']:.4g} {metrics['epoch_time_s']:.1f}s" + (" *" if improved else ""))
    train_time = time.perf_counter() - t0

    result = {"out_dir": str(out), "epochs": config.epochs, "best_epoch": best["epoch"],
              "best_val_robust": best["val_robust"] if best["epoch"] else None, "train_time_s": train_time,
              "history": history, "checkpoint": None, "test_clean": None, "test_robust": None,
              "test_attack": f"PGD-{steps} eps={eps:.4g} alpha={alpha:.4g} random start"}
    if d.rank == 0:
        chosen = out / ("best.json" if config.early_stop and best["epoch"] else "last.json")
        result["checkpoint"] = str(chosen)
        if chosen.name == "best.json":
            _, weights, _ = ckpt.read(chosen, device)
            shift_streams(model, -d.rank)
            ckpt.load_weights(model, weights, where=f"checkpoint {chosen}")
        if config.test_eval:
            t = evaluate(model, test_loader, eps, alpha, steps, seed=mix_seed(config.seed, 100), device=device)
            result.update(test_clean=t["clean"], test_robust=t["robust"])
            log(f"test ({'best epoch ' + str(best['epoch']) if chosen.name == 'best.json' else 'last epoch'}): "
                f"clean {t['clean']:.4f} {result['test_attack']} {_fmt(t['robust'])}  [{train_time:.1f}s training]")
    d.barrier()
    return result
