"""`fastnoise bench`: run the benchmarks of the source tree (benchmarks/run.py) and print the table."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def _find_runner() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        p = base / "benchmarks" / "run.py"
        if p.exists():
            return p
    raise FileNotFoundError("benchmarks/run.py not found: run `fastnoise bench` from the fastnoise source tree")


def _run(args: argparse.Namespace) -> int:
    return subprocess.call([sys.executable, str(_find_runner())] + list(args.rest))


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run the op benchmarks (reference vs torch.compile vs backends)",
                       description="Arguments after `bench` go to benchmarks/run.py (see --help there).")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_run)
