"""`fastnoise demo` (what `make demo` runs): the whole pipeline on the embedded digits data set, on CPU.

1. PGD-AT (Madry, via `fastnoise.train.fit`) of the small CNN on digits (8x8, 10 classes, eps 0.2);
2. conversion with a noise defense: NENNI (`fastnoise.convert(model, "nenni", ...)`, then distillation and
   PGD adversarial fine-tuning by `fastnoise.nenni.distill`) when that method is
   registered, else RSE (`GaussianNoise` before every conv, ``convert(model, "rse", sigma=...)``);
3. honest robust evaluation (`fastnoise.attacks.evaluate`): clean / PGD-20 / FGSM / AutoAttack-rand with
   EOT-20, noise on, accuracy mean ± std over 5 inference draws, the labelled seed protocol, forward-pass
   counts, per-sample worst case, accuracy-vs-EOT curve and the eps = 1 sanity check. The expensive
   attacks run on the first test samples only (marked "subsampled" in the table);
4. prints the table and writes results.json / results.md / PNG plots to runs/demo (and the op benchmark
   table with --bench, when benchmarks/ is present).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_METHOD_OPTIONS = {"nenni": {"ratio": 0.9}, "rse": {"sigma": 0.1, "seed": 0}}


def _after_convert(method: str, model, splits, args) -> str:
    """A method's own post-conversion recipe. NENNI (seed 000): distill W~, b~ -> PGD-10 adversarial
    fine-tuning in noisy mode (W~ included) -> INT4 (`fastnoise.nenni.distill`; without the adversarial
    fine-tuning, full-gradient PGD breaks the approximation path: docs/nenni.md, "Robustness"). RSE needs
    none (noise layers inserted into the PGD-AT model as is)."""
    if method != "nenni":
        return "none"
    import importlib

    import torch
    nenni = importlib.import_module("fastnoise.nenni")
    x, y = splits.train.tensors()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(args.seed))
    batches = [(x[perm[i:i + 64]], y[perm[i:i + 64]]) for i in range(0, len(y), 64)]
    eps = splits.default_eps
    nenni.distill(model, batches, epochs=args.distill_epochs, finetune_epochs=args.finetune_epochs,
                  attack=nenni.pgd_attack(eps, eps / 4, 10), progress=False)
    return (f"nenni.distill: {args.distill_epochs} distillation epochs, {args.finetune_epochs} PGD-10 adversarial "
            f"fine-tuning epochs in noisy mode (W~ included), INT4")


def _method(requested: str | None) -> str:
    from .convert import methods
    valid = methods()
    if requested is not None:
        if requested not in valid:
            raise ValueError(f"--method must be one of {valid}, got {requested!r}")
        return requested
    return "nenni" if "nenni" in valid else "rse"


def _bench(out: Path, timeout: float) -> str | None:
    """The quick op benchmark table (benchmarks/run.py --quick), or None when the source tree is absent."""
    from .bench import _find_runner
    try:
        runner = _find_runner()
    except FileNotFoundError:
        return None
    if not list(runner.parent.glob("bench_*.py")):
        return "no op benchmarks (benchmarks/bench_*.py) in this tree yet"
    p = subprocess.run([sys.executable, str(runner), "--quick", "--min-run-time", "0.1"], capture_output=True,
                       text=True, timeout=timeout)
    text = p.stdout[p.stdout.find("device:"):] if "device:" in p.stdout else p.stdout + p.stderr
    (out / "bench.txt").write_text(text)
    return text


def run(args: argparse.Namespace) -> int:
    import torch

    from . import convert, data, train
    from .attacks import evaluate, format_table, write_reports
    from .nn import noise_modules

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    method = _method(args.method)
    options = dict(DEFAULT_METHOD_OPTIONS.get(method, {}))
    if args.sigma is not None:
        options["sigma"] = args.sigma
    print(f"[demo] 1/3 PGD-AT of small_cnn on digits ({args.epochs} epochs), {args.threads} thread(s)", flush=True)
    cfg = train.TrainConfig(dataset="digits", model="small_cnn", method="none", recipe="pgd", epochs=args.epochs,
                            batch_size=64, lr=0.05, seed=args.seed, out_dir=str(out / "train"), device="cpu",
                            val_samples=200, quiet=False)
    fit = train.fit(cfg, overwrite=True)  # the demo re-runs into its own folder
    model, _ = train.load_checkpoint(fit["checkpoint"])
    t_train = time.perf_counter() - t0
    print(f"[demo] PGD-AT model: test clean {fit['test_clean']:.4f}, {fit['test_attack']}: {fit['test_robust']:.4f} "
          f"({t_train:.0f}s)", flush=True)

    print(f"[demo] 2/3 convert with {method!r} {options}", flush=True)
    splits = data.load("digits", seed=args.seed)
    torch.manual_seed(args.seed)
    model = convert(model, method, **options)
    recipe = _after_convert(method, model, splits, args)
    model.eval()
    print(f"[demo]     {len(noise_modules(model))} noise modules; post-conversion recipe: {recipe}", flush=True)

    x, y = splits.test.tensors()
    n_exp = args.expensive_samples
    print(f"[demo] 3/3 robust evaluation: eps {splits.default_eps}, EOT-{args.eot}, {args.draws} draws, "
          f"test set {len(y)} (expensive attacks: first {n_exp})", flush=True)
    limits = {"autoattack_rand": n_exp, "eot_curve": n_exp, "sanity": min(64, n_exp)}
    if args.max_samples:
        limits["default"] = args.max_samples
    res = evaluate(model, (x, y), ["pgd20", "fgsm", "autoattack_rand"], splits.default_eps, eot=args.eot,
                   draws=args.draws, max_samples=limits,
                   seed=args.seed, eot_curve=[1, 2, 5, 10, 20], n_classes=splits.num_classes,
                   log=lambda s: print(s, flush=True))
    res["settings"]["dataset"] = "digits (test split)"
    res["settings"]["defense"] = {"method": method, "options": options, "recipe": recipe, "base": "small_cnn PGD-AT",
                                  "base_test_clean": fit["test_clean"], "base_test_robust": fit["test_robust"],
                                  "base_test_attack": fit["test_attack"], "train_seconds": t_train}
    paths = write_reports(res, out)
    print()
    print(format_table(res))
    left = args.budget - (time.perf_counter() - t0)
    if args.bench and left >= 120:
        print("\n[demo] op benchmarks (benchmarks/run.py --quick):", flush=True)
        try:
            table = _bench(out, timeout=left - 30)
        except subprocess.TimeoutExpired:
            table = "stopped: over the demo's time budget (--budget)"
        print(table if table is not None else "benchmarks/ not found: run the demo from the source tree")
    elif args.bench:
        print(f"\n[demo] op benchmarks skipped: {left:.0f}s left of the {args.budget:.0f}s budget (`fastnoise bench`)")
    total = time.perf_counter() - t0
    (out / "timing.json").write_text(json.dumps({"train_s": t_train, "total_s": total}, indent=2) + "\n")
    print(f"\n[demo] reports: {', '.join(paths.values())}\n[demo] wall time {total:.0f}s "
          f"(training {t_train:.0f}s)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="PGD-AT + noise defense + robust evaluation on digits (CPU, < 10 min)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--epochs", type=int, default=8, help="PGD-AT epochs (default 8)")
    p.add_argument("--method", default=None, help="conversion method (default: nenni if registered, else rse)")
    p.add_argument("--distill-epochs", type=int, default=20, help="NENNI distillation epochs (default 20)")
    p.add_argument("--finetune-epochs", type=int, default=3,
                   help="NENNI adversarial fine-tuning epochs (default 3)")
    p.add_argument("--sigma", type=float, default=None, help="RSE noise std (default 0.1)")
    p.add_argument("--eot", type=int, default=20, help="EOT draws per gradient (default 20)")
    p.add_argument("--draws", type=int, default=5, help="inference draws (default 5)")
    p.add_argument("--expensive-samples", type=int, default=64,
                   help="test samples for AutoAttack-rand and the EOT curve (default 64)")
    p.add_argument("--max-samples", type=int, default=None, help="evaluate the first N test samples only")
    p.add_argument("--budget", type=float, default=600,
                   help="seconds: the benchmark table runs only if >= 120 s of this budget are left (default 600)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: the models are tiny; more threads only contend)")
    p.add_argument("--bench", action=argparse.BooleanOptionalAction, default=True,
                   help="also print the quick op benchmark table (default on)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
