"""STBP, STBP-N, NIT, NIT-S and NIT-S+ on digits through `fastnoise train --method nit`, then attacked as deployed.

Every trainer trains the network of `configs/digits_nit.json` (spiking MLP 64-100-10, T = 8, direct
input, membrane readout) from the same seed with the same SGD settings, only ``method_options.trainer``
differs. Reported per trainer: training time, peak tensor memory of one training step
(`fastnoise.methods.nit.peak_memory`), and `fastnoise.attacks.evaluate` at eps 0.1 (the seed's radius):

* adaptive (headline): PGD-20 through the LIF surrogate gradient (BPDA) with EOT over the neuron noise
  (``--eot`` draws per gradient), and Square (score-based, gradient-free; `--square-queries`), the
  adversarial examples classified with fresh noise draws (mean over `--draws`);
* seed protocol (labelled; seed 002 §4): one noise draw per attack step, BIM / PGD / MIM with step 0.01
  and 15 steps, FGSM, DIM (TIM is RGB-only in torchattacks: left out on grey digits).

Noise-off STBP is deterministic: one protocol. The accuracies do not depend on the machine load; the
training times do (run it alone for them: `/work/tools/quiet`).

    python benchmarks/nit_robustness.py [--epochs 30] [--trainers stbp,stbp_n,nit,nit_s,nit_s+] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastnoise import attacks, data, methods  # noqa: E402
from fastnoise.methods import nit as nc  # noqa: E402
from fastnoise.train import TrainConfig, fit  # noqa: E402
from fastnoise.train import checkpoint as ckpt  # noqa: E402

SEED_ATTACKS = ["bim", "pgd20", "mifgsm", "fgsm", "difgsm"]
SEED_STEPS = {"bim": 15, "pgd20": 15, "mifgsm": 15, "difgsm": 15}
SEED_KW = {"bim": {"alpha": 0.01}, "pgd20": {"alpha": 0.01}, "mifgsm": {"alpha": 0.01}, "difgsm": {"alpha": 0.01}}


def _acc(report: dict, attack: str) -> "float | None":
    """Mean accuracy of `attack` in an evaluate() report (one protocol per report); "worst": the per-sample
    worst case over its attacks; "clean": the clean accuracy."""
    if attack == "clean":
        return report["clean"]["accuracy"]["mean"]
    rows = report["worst_case"] if attack == "worst" else [r for r in report["rows"] if r["attack"] == attack]
    return rows[0]["accuracy"]["mean"] if rows else None


def run(trainer: str, args) -> dict:
    cfg = json.loads((ROOT / "configs" / "digits_nit.json").read_text())
    cfg.update(epochs=args.epochs, out_dir=str(Path(args.out) / trainer), quiet=True, test_eval=False,
               method_options=dict(cfg["method_options"], trainer=trainer))
    config = TrainConfig.from_dict(cfg)
    t0 = time.perf_counter()
    res = fit(config)
    train_s = time.perf_counter() - t0
    model, _ = ckpt.load_checkpoint(res["checkpoint"], "cpu")
    splits = data.load("digits", seed=config.seed)
    xt, yt = splits.test.tensors()
    # peak memory of one training step on the trained model (same hooks as the trainer)
    hooks = methods.get("nit").hooks(config)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    xb, yb = xt[:config.batch_size], yt[:config.batch_size]

    def step():
        out = hooks.update(model, model, opt, xb, xb, yb)
        if out is None:  # the STBP trainers: the trainer's backprop step
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    _, peak = nc.peak_memory(step)
    model, _ = ckpt.load_checkpoint(res["checkpoint"], "cpu")  # undo that step
    model.eval()
    n = min(args.samples, len(yt))
    headline = attacks.evaluate(model, (xt[:n], yt[:n]), ["pgd20", "square"], [args.eps], eot=args.eot,
                                draws=args.draws, protocol=["eot"], max_samples={"square": args.square_samples},
                                steps={"square": args.square_queries}, seed=0, method="nit",
                                sanity_eps=1.0, n_classes=10)
    seedp = attacks.evaluate(model, (xt[:n], yt[:n]), SEED_ATTACKS, [args.eps], draws=args.draws,
                             protocol=["seed"], steps=SEED_STEPS, attack_kwargs=SEED_KW, seed=0, method="nit",
                             sanity_eps=None, n_classes=10)
    row = {"trainer": trainer, "randomized": headline["settings"]["randomized"], "train_s": round(train_s, 1),
           "step_peak_mb": round(peak / 2 ** 20, 2), "clean": _acc(headline, "clean"),
           "pgd20_eot": _acc(headline, "pgd20"), "square": _acc(headline, "square"),
           "worst_adaptive": _acc(headline, "worst"), "sanity_pgd_eps1": (headline["sanity"] or {}).get("accuracy", {}).get("mean"),
           **{f"seed_{a}": _acc(seedp, a) for a in SEED_ATTACKS}, "errors": headline["errors"] + seedp["errors"]}
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trainers", default="stbp,stbp_n,nit,nit_s,nit_s+")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--eot", type=int, default=10)
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--samples", type=int, default=360, help="test images attacked (digits has 360)")
    p.add_argument("--square-samples", type=int, default=100)
    p.add_argument("--square-queries", type=int, default=1000)
    p.add_argument("--out", default="runs/nit_robustness")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = []
    for t in args.trainers.split(","):
        rows.append(run(t, args))
        print(json.dumps(rows[-1]), flush=True)
    cols = list(rows[0])
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join("" if r[c] is None else (f"{r[c]:.3f}" if isinstance(r[c], float) and c not in ("train_s", "step_peak_mb") else str(r[c])) for c in cols) + " |")
    print(f"\nsettings: {vars(args)}; torch threads {torch.get_num_threads()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
