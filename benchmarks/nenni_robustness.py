"""NENNI robustness on digits: the PGD-AT small CNN converted at r = 0.9, 0.99 and N:M, attacked honestly.

    python benchmarks/nenni_robustness.py --checkpoint runs/digits_pgd/best.json [--out results/nenni_robustness]

Base: a PGD-AT small CNN on digits (`fastnoise train --config configs/digits_pgd.json`, or trained here
with the same settings when --checkpoint is not given). For each configuration the base is converted
(`fastnoise.convert(model, "nenni", ...)`: conv2, conv3 and fc1; stem and classifier exact), then
`fastnoise.nenni.distill` runs with one of two fine-tuning recipes:

* ``clean``: distillation, ``--finetune`` epochs of noisy fine-tuning on clean data (W~ included), INT4;
* ``adv``: the same with PGD-10 adversarial fine-tuning (`fastnoise.nenni.pgd_attack`, eps 0.2, alpha 0.05).

Every model is evaluated by `fastnoise.attacks.evaluate` on the whole digits test split (eps 0.2,
PGD-20, step eps/4, random start) under the EOT-20 and seed protocols, and once more with PGD-20
whose gradients pass through the essential neurons only (`fastnoise.nenni.essential_gradients`: the
gradient a non-differentiable fixed-point approximation exposes, i.e. gradient masking). Writes
``results.json`` and ``results.md`` (the table in docs/nenni.md).

Seed notation: "N:M" injects noise into N of every M neurons, i.e. ``nm=(M - N, M)`` kept here.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fastnoise  # noqa: E402
import fastnoise.nenni as nenni  # noqa: E402
from fastnoise import data, train  # noqa: E402
from fastnoise.attacks import evaluate  # noqa: E402

#: (label, convert options): seed notation N:M = noise into N of M = nm=(M - N, M) kept
CONFIGS = [("r=0.9", {"ratio": 0.9}), ("r=0.99", {"ratio": 0.99}), ("1:8", {"nm": (7, 8)}),
           ("4:8", {"nm": (4, 8)}), ("7:8", {"nm": (1, 8)})]
EPS = 0.2


def _base(args) -> torch.nn.Module:
    if args.checkpoint:
        model, _ = train.load_checkpoint(args.checkpoint)
        return model
    cfg = train.TrainConfig(**{**json.loads(Path("configs/digits_pgd.json").read_text()),
                               "out_dir": str(Path(args.out) / "train"), "device": "cpu"})
    fit = train.fit(cfg, overwrite=True)  # a fresh base model per benchmark run (--checkpoint keeps one)
    return train.load_checkpoint(fit["checkpoint"])[0]


def _accuracy(res: dict, protocol: str) -> float:
    """PGD-20 accuracy under `protocol`; a deterministic model has one protocol-free row."""
    rows = [r for r in res["rows"] if r["attack"] == "pgd20"]
    row = next((r for r in rows if r["protocol"] == protocol), None) or rows[0]
    return row["accuracy"]["mean"]


def _evaluate(model: torch.nn.Module, test, args) -> dict:
    model.eval()
    res = evaluate(model, test, ["pgd20"], EPS, eot=args.eot, draws=1, protocol=("eot", "seed"), seed=0,
                   sanity_eps=None, n_classes=10)
    out = {"clean": res["clean"]["accuracy"]["mean"], "pgd20_eot": _accuracy(res, "eot"),
           "pgd20_seed": _accuracy(res, "seed")}
    if fastnoise.nn.nenni_layers(model):
        with nenni.essential_gradients(model):
            res = evaluate(model, test, ["pgd20"], EPS, eot=1, draws=1, protocol=("seed",), seed=0,
                           sanity_eps=None, n_classes=10)
        out["pgd20_essential_grad"] = _accuracy(res, "seed")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="PGD-AT small_cnn checkpoint (default: train one)")
    ap.add_argument("--out", default="results/nenni_robustness")
    ap.add_argument("--distill-epochs", type=int, default=30)
    ap.add_argument("--finetune", type=int, default=3, help="clean fine-tuning epochs (default 3)")
    ap.add_argument("--adv-finetune", type=int, default=4, help="PGD fine-tuning epochs (default 4)")
    ap.add_argument("--eot", type=int, default=20)
    ap.add_argument("--configs", default=",".join(c for c, _ in CONFIGS))
    ap.add_argument("--recipes", default="clean,adv")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = _base(args)
    splits = data.load("digits", seed=0)
    test = splits.test.tensors()
    xt, yt = splits.train.tensors()
    perm = torch.randperm(len(yt), generator=torch.Generator().manual_seed(0))
    batches = [(xt[perm[i:i + 64]], yt[perm[i:i + 64]]) for i in range(0, len(yt), 64)]
    t0 = time.perf_counter()
    rows = [{"config": "unconverted", "recipe": "PGD-AT", **_evaluate(base, test, args)}]
    print(rows[-1], flush=True)
    wanted = args.configs.split(",")
    for label, opts in [c for c in CONFIGS if c[0] in wanted]:
        for recipe in args.recipes.split(","):
            torch.manual_seed(0)
            model = fastnoise.convert(copy.deepcopy(base), "nenni", **opts)
            adv = recipe == "adv"
            nenni.distill(model, batches, epochs=args.distill_epochs,
                          finetune_epochs=args.adv_finetune if adv else args.finetune,
                          attack=nenni.pgd_attack(EPS, 0.05, 10) if adv else None, progress=False)
            rows.append({"config": label, "recipe": recipe, "options": {k: list(v) if isinstance(v, tuple) else v
                                                                        for k, v in opts.items()},
                         **_evaluate(model, test, args)})
            print(rows[-1], f"({time.perf_counter() - t0:.0f}s)", flush=True)
    settings = {"eps": EPS, "attack": "PGD-20, step eps/4, random start", "eot": args.eot,
                "distill_epochs": args.distill_epochs, "finetune_clean": args.finetune,
                "finetune_adv": args.adv_finetune, "n_test": len(test[1]), "seconds": time.perf_counter() - t0}
    (out / "results.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
    lines = ["| NENNI | recipe | clean % | PGD-20 EOT-20 % | PGD-20 seed protocol % | PGD-20 essential-only gradient % |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ess = r.get("pgd20_essential_grad")
        lines.append(f"| {r['config']} | {r['recipe']} | {100 * r['clean']:.1f} | {100 * r['pgd20_eot']:.1f} | "
                     f"{100 * r['pgd20_seed']:.1f} | {'—' if ess is None else f'{100 * ess:.1f}'} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
