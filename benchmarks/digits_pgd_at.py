"""Acceptance measurement: PGD-AT small_cnn on digits (configs/digits_pgd.json), then clean and
torchattacks PGD-20 test accuracy (eps 0.2, alpha 2.5 eps / 20, random start).

    OMP_NUM_THREADS=1 python benchmarks/digits_pgd_at.py [--ckpt runs/digits_pgd]   # --ckpt: skip training
"""
import argparse
import json
import time

import torch
import torchattacks

import fastnoise.data as fd
from fastnoise.train import TrainConfig, fit, load_checkpoint
from fastnoise.train.cli import load_config_file


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/digits_pgd.json")
    ap.add_argument("--ckpt", help="evaluate this run directory instead of training")
    args = ap.parse_args()
    train_s = None
    if args.ckpt is None:
        cfg = TrainConfig.from_dict(load_config_file(args.config))
        t = time.perf_counter()
        fit(cfg, overwrite=True)  # a benchmark re-trains; --ckpt evaluates a kept run
        train_s = time.perf_counter() - t
        args.ckpt = cfg.out_dir
    model, cfg = load_checkpoint(args.ckpt)
    splits = fd.load(cfg.dataset, cfg.data_root, seed=cfg.seed)
    x, y = splits.test.tensors()
    eps = cfg.eps if cfg.eps is not None else splits.default_eps
    torch.manual_seed(0)
    atk = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / 20, steps=20, random_start=True)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    x_adv = atk(x, y)
    with torch.no_grad():
        robust = (model(x_adv).argmax(1) == y).float().mean().item()
    print(json.dumps({"checkpoint": args.ckpt, "n_test": len(y), "clean": clean, "pgd20": robust, "eps": eps,
                      "alpha": 2.5 * eps / 20, "fit_wall_s": train_s, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
