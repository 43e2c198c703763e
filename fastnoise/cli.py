"""Command line: ``fastnoise info | demo | train | eval | leaderboard | bench``.

Each subcommand lives with its slice: ``fastnoise/<slice>/cli.py`` defines ``add_parser(subparsers)``
(which registers the subcommand and sets ``func``) so that this file only wires them together.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Optional, Sequence

# subcommand -> module defining add_parser(subparsers)
SUBCOMMANDS = {
    "train": "fastnoise.train.cli",
    "eval": "fastnoise.attacks.cli",
    "leaderboard": "fastnoise.leaderboard.cli",
    "demo": "fastnoise.demo",
    "bench": "fastnoise.bench",
}


def _info(args: argparse.Namespace) -> int:
    from . import info
    print(info())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastnoise", description="fast noise-injection defenses")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="what is built, for which torch/CUDA/arch, and which backends are usable")
    p.set_defaults(func=_info)
    for name, module in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if not (e.name and (module == e.name or module.startswith(e.name + "."))):
                raise
            continue  # slice not present in this build
        mod.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
