"""`fastnoise train`: a config file (JSON, or YAML when PyYAML is installed) plus flags overriding it.

    fastnoise train --config configs/digits_pgd.json --epochs 10 --out-dir runs/x
    fastnoise train --dataset cifar10 --model preact_resnet18 --recipe pgd --epochs 200
    fastnoise train --config cfg.json --resume            # continue a killed run from out_dir/last
    fastnoise train --config cfg.json --overwrite         # replace the run in out_dir (else: an error)
    torchrun --nproc-per-node 4 -m fastnoise train --config cfg.json --distributed

Every `TrainConfig` key has a flag (``--batch-size`` for batch_size); dict keys take JSON
(``--method-options '{"k": 1}'``), ``--milestones 50,75``, booleans ``--early-stop true|false``.

The output folder is locked while a run trains into it: a second run into the same folder fails at once,
and a folder that already holds a run is refused unless ``--resume`` or ``--overwrite`` is given
(`fastnoise.train.rundir`). Errors in the config or the output folder exit with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Optional

from .config import TrainConfig


def _bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def _json_dict(s: str) -> dict:
    try:
        v = json.loads(s)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {s!r} ({e})") from None
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {s!r}")
    return v


def _int_list(s: str) -> Optional[list]:
    if s.strip().lower() in ("", "none", "null", "default"):
        return None
    try:
        return [int(p) for p in s.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs like 50,75, got {s!r}") from None


def _opt_float(s: str) -> Optional[float]:
    return None if s.strip().lower() in ("none", "null", "default") else float(s)


def _opt_int(s: str) -> Optional[int]:
    return None if s.strip().lower() in ("none", "null", "default") else int(s)


def _opt_str(s: str) -> Optional[str]:
    return None if s.strip().lower() in ("null", "default") else s


_TYPES = {"model": _opt_str, "model_options": _json_dict, "method_options": _json_dict, "milestones": _int_list,
          "eps": _opt_float, "alpha": _opt_float, "steps": _opt_int}


def load_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} not found")
    text = p.read_text()
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError:
            raise ValueError(f"{p}: YAML configs need PyYAML (pip install pyyaml); or use JSON") from None
        d = yaml.safe_load(text)
    else:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{p}: a config must be a mapping of TrainConfig keys, got {type(d).__name__}")
    return d


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a model (data set, architecture, defense method, recipe)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON (or YAML) file of TrainConfig keys; flags override it")
    p.add_argument("--resume", action="store_true", help="continue the run in out_dir from its last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run that out_dir holds (its checkpoints are deleted first)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default_repr = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw: dict[str, Any] = {"default": None, "dest": f.name, "help": f"(default: {default_repr})"}
        if f.name in _TYPES:
            kw["type"] = _TYPES[f.name]
        elif f.type in ("bool", bool):
            if f.name == "distributed":
                kw.update(nargs="?", const=True)
            kw["type"] = _bool
        elif f.type in ("int", int):
            kw["type"] = int
        elif f.type in ("float", float):
            kw["type"] = float
        p.add_argument(flag, **kw)
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    d = load_config_file(args.config) if args.config else {}
    unknown = sorted(set(d) - set(TrainConfig.keys()))
    if unknown:
        raise ValueError(f"{args.config}: unknown config key(s) {unknown}; valid keys: {TrainConfig.keys()}")
    for k in TrainConfig.keys():
        v = getattr(args, k, None)
        if v is not None:
            d[k] = v
    return TrainConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"fastnoise train: error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    from .loop import fit
    from .rundir import RunDirError
    try:
        result = fit(config, resume=args.resume, overwrite=args.overwrite)
    except (FileNotFoundError, RunDirError, ValueError, TypeError) as e:  # bad out_dir / resume / options
        print(f"fastnoise train: error: {e}", file=sys.stderr)
        return 2
    if result.get("checkpoint"):
        summary = {k: v for k, v in result.items() if k != "history"}
        print(json.dumps(summary, indent=2))
    return 0
