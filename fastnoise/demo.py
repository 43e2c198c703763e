"""`fastnoise demo` (what `make demo` runs): the whole pipeline on the embedded digits data set, on CPU.

1. PGD-AT (Madry, via `fastnoise.train.fit`) of the small CNN on digits (8x8, 10 classes, eps 0.2);
2. conversion with a defense method (`fastnoise.methods.default()` unless ``--method`` names another) with
   its reference options (`Method.example_options`, or ``--method-options``), then the method's own
   post-conversion recipe (`Method.after_convert`, options ``--post-options``);
3. honest robust evaluation (`fastnoise.attacks.evaluate`) of the deployed model (`Method.deploy`: the
   method's inference rule): clean / PGD-20 / FGSM / AutoAttack-rand with EOT-20, noise on, accuracy
   mean ± std over 5 inference draws, the labelled seed protocol, forward-pass counts, per-sample worst
   case, accuracy-vs-EOT curve and the eps = 1 sanity check. The expensive attacks run on the first test
   samples only (marked "subsampled" in the table);
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

from .train.cli import _json_dict  # the --*-options argument type, shared with `fastnoise train`


def _method(requested: str | None):
    from . import methods
    return methods.get(requested if requested is not None else methods.default())


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

    from . import convert, data, methods, train
    from .attacks import evaluate, format_table, write_reports
    from .nn import noise_modules

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        method = _method(args.method)
        options = dict(method.example_options if args.method_options is None else args.method_options)
        post_options = dict(args.post_options or {})
        method.check_options(options)
        method.check_post_options(post_options)
    except (ValueError, TypeError) as e:
        print(f"fastnoise demo: error: {e}", file=sys.stderr)
        return 2
    print(f"[demo] 1/3 PGD-AT of small_cnn on digits ({args.epochs} epochs), {args.threads} thread(s)", flush=True)
    cfg = train.TrainConfig(dataset="digits", model="small_cnn", method="none", recipe="pgd", epochs=args.epochs,
                            batch_size=64, lr=0.05, seed=args.seed, out_dir=str(out / "train"), device="cpu",
                            val_samples=200, quiet=False)
    fit = train.fit(cfg, overwrite=True)  # the demo re-runs into its own folder
    model, _ = train.load_checkpoint(fit["checkpoint"])
    t_train = time.perf_counter() - t0
    print(f"[demo] PGD-AT model: test clean {fit['test_clean']:.4f}, {fit['test_attack']}: {fit['test_robust']:.4f} "
          f"({t_train:.0f}s)", flush=True)

    print(f"[demo] 2/3 convert with {method.name!r} {options}", flush=True)
    splits = data.load("digits", seed=args.seed)
    torch.manual_seed(args.seed)
    model = convert(model, method.name, **options)
    recipe = method.after_convert(model, methods.ConvertData.from_splits(splits, 64, args.seed), **post_options)
    model.eval()
    print(f"[demo]     {len(noise_modules(model))} noise modules; post-conversion recipe: {recipe}; "
          f"inference: {method.evaluation.inference_doc}", flush=True)

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
                   log=lambda s: print(s, flush=True), method=method)
    res["settings"]["dataset"] = "digits (test split)"
    res["settings"]["defense"] = {"method": method.name, "options": options, "recipe": recipe,
                                  "post_options": post_options, "evaluation": method.evaluation.describe(),
                                  "base": "small_cnn PGD-AT",
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
    p.add_argument("--method", default=None,
                   help="defense method (default: fastnoise.methods.default(); `fastnoise info` lists them)")
    p.add_argument("--method-options", type=_json_dict, default=None,
                   help="conversion options as JSON (default: the method's example_options)")
    p.add_argument("--post-options", type=_json_dict, default=None,
                   help="options of the method's post-conversion recipe as JSON (default: its defaults)")
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
