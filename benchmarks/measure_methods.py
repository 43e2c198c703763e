"""Measurements of issue 11 (docs/methods.md "Measured"); run from the repository root under /work/tools/heavy.

    python benchmarks/measure_methods.py bounds             # CTRW A and B: digits small_cnn, CIFAR ResNet-18
    python benchmarks/measure_methods.py sigma              # CTRW sum(sigma) per epoch with / without the constraint
    python benchmarks/measure_methods.py prune              # RSR accuracy before / after pruning, sparsity

Each prints one JSON object and writes it to results/methods/<what>.json.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import fastnoise
from fastnoise import data as fd
from fastnoise import models
from fastnoise.methods import ctrw, rsr
from fastnoise.train import TrainConfig, fit, load_checkpoint
from fastnoise.train.loop import evaluate, mix_seed

OUT = Path(__file__).resolve().parents[1] / "results" / "methods"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _cfg(name: str, **kw) -> TrainConfig:
    d = json.loads((CONFIGS / f"{name}.json").read_text())
    d.update(kw)
    return TrainConfig.from_dict(d)


def bounds() -> dict:
    out = {}
    splits = fd.load("digits")
    x, _ = splits.train.tensors()
    for alpha in (-1e-3, -0.048):
        torch.manual_seed(0)
        m = fastnoise.convert(models.build("small_cnn", 10, 1, 8, mean=splits.mean, std=splits.std), "ctrw",
                              input_size=[8, 8], seed=0)
        out[f"digits_small_cnn_init_alpha{alpha}"] = ctrw.bounds(m, x[:64], alpha=alpha)
    torch.manual_seed(0)
    m = fastnoise.convert(models.build("resnet18", 10, 3, 32, mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.243, 0.261)),
                          "ctrw", seed=0)
    xr = torch.rand(128, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out["cifar10_resnet18_init_uniform_images_alpha-0.001"] = ctrw.bounds(m, xr, alpha=-1e-3)
    return out


def sigma() -> dict:
    out = {}
    for constraint in ("bounds", "none"):
        cfg = _cfg("digits_ctrw", out_dir=f"runs/measure_ctrw_{constraint}", quiet=True,
                   method_options={**_cfg("digits_ctrw").method_options, "constraint": constraint})
        r = fit(cfg)
        out[constraint] = {"train_time_s": r["train_time_s"], "test_clean": r["test_clean"], "test_robust": r["test_robust"],
                           "best_epoch": r["best_epoch"],
                           "per_epoch": [{k: h[k] for k in ("epoch", "ctrw_A", "ctrw_B", "ctrw_sigma_sum", "ctrw_sigma_min",
                                                            "ctrw_sigma_mean", "ctrw_sigma_max", "val_clean", "val_robust")
                                          if k in h} for h in r["history"]]}
    return out


def prune() -> dict:
    cfg = _cfg("digits_rsr", out_dir="runs/measure_rsr_unpruned", quiet=True,
               method_options={**_cfg("digits_rsr").method_options, "prune_epoch": 0})
    r = fit(cfg)
    model, _ = load_checkpoint(cfg.out_dir)
    splits = fd.load("digits")
    _, _, test = fd.loaders(splits, 128, seed=0)
    eps, alpha, steps = cfg.attack_params(splits)
    before = evaluate(model, test, eps, alpha, steps, seed=mix_seed(cfg.seed, 100))
    out = {"train_time_s": r["train_time_s"], "before": before, "sparsity_before": rsr.sparsity(model)}
    for gamma in (cfg.method_options["gamma"], 1e-2, 3e-2):
        m = load_checkpoint(cfg.out_dir)[0]
        p = rsr.prune(m, gamma)
        out[f"after_gamma_{gamma}"] = {"sparsity": p["sparsity"],
                                       **evaluate(m, test, eps, alpha, steps, seed=mix_seed(cfg.seed, 100))}
    return out


if __name__ == "__main__":
    what = sys.argv[1]
    torch.set_num_threads(2)
    t0 = time.time()
    res = {"bounds": bounds, "sigma": sigma, "prune": prune}[what]()
    res["_seconds"] = time.time() - t0
    res["_machine"] = "2-core shared CPU, torch " + torch.__version__
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{what}.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
