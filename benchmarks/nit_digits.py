"""Train STBP, STBP-N, NIT, NIT-S and NIT-S+ briefly on the embedded digits data (seed 002 §4 at toy scale).

Every method trains the same spiking MLP (fastnoise.models.SpikingMLP: 64 -> hidden -> 10 LIF network,
T steps, direct-current input, membrane readout) from the same initialization with Adam:
  * STBP:   surrogate-gradient BPTT (atan), neuron noise off in training and deployment;
  * STBP-N: STBP with standard-normal noise in every neuron (sigma = 1, not trained), noise on;
  * NIT:    the LR estimator (seed Eq. 1 / 8), C replicas, leave-one-out baseline, projection Pi_Omega;
  * NIT-S:  the sign estimator (Eq. 3);   NIT-S+: NIT-S for the first 70% of the epochs, then NIT (§4.4).
Reported per method: clean test accuracy as deployed (one noise draw per image for the noisy models)
and with the noise off, wall time per training step (median), peak tensor memory of one step
(fastnoise.methods.nit.peak_memory: torch profiler allocation events). Timings: run it alone
(`/work/tools/quiet`); the accuracies do not depend on the machine load.

    python benchmarks/nit_digits.py [--epochs 10] [--replicas 16] [--hidden 100] [--steps 8] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastnoise import data, models  # noqa: E402
from fastnoise.methods import nit as nc  # noqa: E402
from fastnoise.nn import set_noise_mode  # noqa: E402

METHODS = ("stbp", "stbp_n", "nit", "nit_s", "nit_s+")


def build(args) -> torch.nn.Module:
    return models.build("spiking_mlp", 10, 1, 8, hidden=args.hidden, steps=args.steps, sigma_init=args.sigma,
                        decay=args.decay, threshold=args.threshold, seed=args.seed)


def train(method: str, args, splits) -> dict:
    torch.manual_seed(args.seed)
    model = build(args)
    if method == "stbp_n":
        nc.set_sigma_(model, 1.0, trainable=False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    x, y = splits.train.tensors()
    gen = torch.Generator().manual_seed(args.seed)
    switch = int(round(0.7 * args.epochs))
    step_times, losses = [], []

    def step(xb, yb, epoch):
        if method in ("stbp", "stbp_n"):
            return nc.stbp_step(model, xb, yb, opt, noise=method == "stbp_n")
        est = nc.estimator_for_epoch("nit_s+" if method == "nit_s+" else method, epoch, switch)
        return nc.nit_step(model, xb, yb, opt, replicas=args.replicas, chunk=args.chunk, estimator=est,
                           bounds=nc.Bounds(theta=args.theta, sigma_lo=args.sigma_lo, sigma_hi=args.sigma_hi))

    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y) - args.batch + 1, args.batch):
            idx = perm[i:i + args.batch]
            t0 = time.perf_counter()
            out = step(x[idx], y[idx], epoch)
            step_times.append(time.perf_counter() - t0)
            losses.append(out["loss"])
    xb, yb = x[:args.batch], y[:args.batch]
    _, peak = nc.peak_memory(lambda: step(xb, yb, args.epochs))
    set_noise_mode(model, "off" if method == "stbp" else "on")  # as deployed
    xt, yt = splits.test.tensors()
    deployed = nc.accuracy(model, xt, yt, noise=method != "stbp")
    off = nc.accuracy(model, xt, yt, noise=False)
    sig = [round(float(m.sigma.detach().mean()), 3) for m in model.modules() if hasattr(m, "lr_gradients")]
    return {"method": method, "acc_deployed": round(deployed, 4), "acc_noise_off": round(off, 4),
            "final_loss": round(statistics.mean(losses[-10:]), 4), "step_ms": round(1e3 * statistics.median(step_times), 2),
            "peak_mem_mb": round(peak / 2 ** 20, 2), "steps": len(step_times), "mean_sigma": sig}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--replicas", type=int, default=16)
    p.add_argument("--chunk", type=int, default=None)
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--sigma", type=float, default=1.0, help="initial sigma of the NIT layers (seed: 1)")
    p.add_argument("--decay", type=float, default=0.5)
    p.add_argument("--threshold", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--theta", type=float, default=4.0)
    p.add_argument("--sigma-lo", type=float, default=0.05)
    p.add_argument("--sigma-hi", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    splits = data.load("digits")
    rows = []
    for m in args.methods.split(","):
        if m not in METHODS:
            p.error(f"unknown method {m!r}; valid: {METHODS}")
        rows.append(train(m, args, splits))
        print(json.dumps(rows[-1]), flush=True)
    cols = ["method", "acc_deployed", "acc_noise_off", "final_loss", "step_ms", "peak_mem_mb", "mean_sigma"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"\nsettings: {vars(args)}; torch threads {torch.get_num_threads()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
