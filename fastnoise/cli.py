"""Command line: `fastnoise info` (train / eval / bench arrive with their issues)."""
from __future__ import annotations

import argparse
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fastnoise", description="fast noise-injection defenses")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="what is built, for which torch/CUDA/arch, and which backends are usable")
    args = parser.parse_args(argv)
    if args.command == "info":
        from . import info
        print(info())
    return 0
