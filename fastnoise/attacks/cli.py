"""`fastnoise eval --checkpoint PATH --attacks pgd20,fgsm --eps 8/255 --eot 20 --draws 5 --out DIR`.

The data set (and its default eps) comes from the checkpoint's training config; the test split is used.
Exit status: 0 when at least one attack ran, 1 when every attack failed (the errors are in the report),
2 for bad arguments or a checkpoint that cannot be read.
"""
from __future__ import annotations

import argparse
import math
from fractions import Fraction
from pathlib import Path

from .registry import ATTACKS


def _attack_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in ATTACKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown attack(s) {bad or [text]}; valid choices: {', '.join(ATTACKS)}")
    return names


def _eps_value(s: str) -> float:
    try:
        v = float(Fraction(s.strip())) if "/" in s else float(s)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"eps must be a number or a fraction like 8/255, got {s!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"eps must be a finite number >= 0, got {s!r}")
    return v


def _eps_list(text: str) -> list[float]:
    return [_eps_value(s) for s in text.split(",") if s.strip()]


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints >= 1, got {text!r}") from None
    if any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated ints >= 1, got {text!r}")
    return vals


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return v


def _protocols(text: str) -> list[str]:
    from .evaluate import PROTOCOLS
    ps = [s.strip() for s in text.split(",") if s.strip()]
    bad = [p for p in ps if p not in PROTOCOLS]
    if bad or not ps:
        raise argparse.ArgumentTypeError(f"unknown protocol(s) {bad or [text]}; valid choices: {', '.join(PROTOCOLS)}")
    return ps


def _dataset_name(config) -> str:
    for key in ("dataset", "data", "data_name"):
        v = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
        if isinstance(v, str):
            return v
    raise ValueError("the checkpoint's config names no dataset (expected a 'dataset' field)")


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from .. import data, train
    from .evaluate import evaluate
    from .report import format_table, write_reports

    import sys
    try:
        model, config = train.load_checkpoint(args.checkpoint)
    except (ValueError, TypeError, FileNotFoundError) as e:  # damaged, foreign or missing checkpoint
        print(f"fastnoise eval: error: {e}", file=sys.stderr)
        return 2
    name = _dataset_name(config)
    seed = config.get("seed", 0) if isinstance(config, dict) else getattr(config, "seed", 0)
    root = args.data_root if args.data_root is not None else getattr(config, "data_root", None)
    splits = data.load(name, root, seed=seed)
    eps = args.eps if args.eps is not None else [float(splits.default_eps)]
    split = getattr(splits, args.split)
    # fastnoise.data datasets hold their tensors; any other Dataset goes through a DataLoader
    loader = split.tensors() if hasattr(split, "tensors") else DataLoader(split, batch_size=args.batch_size)
    max_samples = {"default": args.max_samples} if args.max_samples else {}
    max_samples.update(args.attack_samples or {})
    results = evaluate(model, loader, args.attacks, eps, eot=args.eot, draws=args.draws, protocol=args.protocol,
                       max_samples=max_samples or None, device=args.device, seed=args.seed,
                       steps=args.steps,
                       eot_curve=args.eot_curve or None, sanity_eps=None if args.no_sanity else args.sanity_eps,
                       n_classes=getattr(splits, "num_classes", None), batch_size=args.batch_size, log=print,
                       method=getattr(config, "method", None) if args.inference_rule else None)
    results["settings"]["checkpoint"] = str(args.checkpoint)
    results["settings"]["dataset"] = f"{name} ({args.split} split)"
    paths = write_reports(results, args.out)
    print()
    print(format_table(results))
    print(f"\nreports: {', '.join(paths.values())}")
    if results["errors"] and not results["rows"]:  # nothing was measured: not a result
        failed = "; ".join(f"{e['attack']} eps={e['eps']} {e['protocol']}: {e['error']}" for e in results["errors"])
        print(f"fastnoise eval: error: every attack failed ({failed})", file=sys.stderr)
        return 1
    return 0


def _per_attack_samples(text: str) -> dict:
    out = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, _, n = item.partition("=")
        name = name.strip()
        if name not in ATTACKS:
            raise argparse.ArgumentTypeError(f"unknown attack {name!r}; valid choices: {', '.join(ATTACKS)}")
        out[name] = _positive(n)
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="robust evaluation of a checkpoint (torchattacks, noise on, EOT, draws)",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint written by `fastnoise train`")
    p.add_argument("--attacks", type=_attack_list, default=["pgd20"],
                   help=f"comma-separated, from: {', '.join(ATTACKS)}")
    p.add_argument("--eps", type=_eps_list, default=None,
                   help="comma-separated L-inf radii (e.g. 4/255,8/255); default: the data set's default eps")
    p.add_argument("--eot", type=_positive, default=20, help="noise draws averaged per attack gradient")
    p.add_argument("--draws", type=_positive, default=5, help="inference draws (accuracy mean ± std)")
    p.add_argument("--protocol", type=_protocols, default=["eot", "seed"], help="eot and/or seed")
    p.add_argument("--max-samples", type=_positive, default=None, help="evaluate the first N test samples")
    p.add_argument("--attack-samples", type=_per_attack_samples, default=None,
                   help="per-attack sample limits, e.g. autoattack_rand=100,square=50")
    p.add_argument("--steps", type=_per_attack_samples, default=None,
                   help="per-attack iterations (queries for square), e.g. square=1000; default: each attack's own "
                        "(square 5000, autoattack_rand 100; the report records the value used)")
    p.add_argument("--eot-curve", type=_int_list, default=None, help="EOT values for the accuracy-vs-EOT plot")
    p.add_argument("--sanity-eps", type=_eps_value, default=1.0, help="eps of the PGD sanity check")
    p.add_argument("--no-sanity", action="store_true", help="skip the large-eps sanity check")
    p.add_argument("--split", choices=["test", "val"], default="test")
    p.add_argument("--batch-size", type=_positive, default=128)
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/eval"), help="output folder for the reports")
    p.add_argument("--inference-rule", action=argparse.BooleanOptionalAction, default=True,
                   help="attack the model as its defense method deploys it (the method's inference rule, e.g. "
                        "an ensemble of draws); --no-inference-rule attacks the converted model itself")
    p.set_defaults(func=run)
