"""`fastnoise leaderboard --dataset digits [--methods all|a,b] [--budget quick|full|FILE.json] [--seeds N] [--out DIR]`.

Trains (or reuses / resumes, from DIR) every selected method and the baselines with one budget, evaluates
them with one protocol, prints the table and a two-line summary, and writes DIR/leaderboard.{json,md} and
the plots. Under torchrun with --distributed the training runs and evaluations are shared out over the
ranks (gloo on CPU, nccl with --device cuda); rank 0 writes one result identical to a single process's.
"""
from __future__ import annotations

import argparse
import sys

from ..attacks.cli import _positive  # int >= 1, the argument type of `fastnoise eval` too


def run(args: argparse.Namespace) -> int:
    from . import _report
    from ._run import run as run_board
    try:
        board = run_board(args.dataset, args.methods, args.budget, args.seeds, args.out, device=args.device,
                          distributed=args.distributed, data_root=args.data_root, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"fastnoise leaderboard: error: {e}", file=sys.stderr)
        return 2
    if board is None:  # not rank 0
        return 0
    print()
    print(_report.format_table(board))
    print()
    print(_report.summary(board))
    print("\n[leaderboard] files: " + ", ".join(board["paths"].values()))
    m = board["meta"]
    print(f"[leaderboard] wall time {m['wall_s']:.0f}s, CPU time {m['cpu_s']:.0f}s (rank 0), {m['processes']} "
          f"process(es), load average {', '.join(f'{v:.1f}' for v in m['load_average'] or [])}")
    return 0


def add_parser(sub) -> None:
    from ._budget import budget_names
    p = sub.add_parser("leaderboard", help="train and attack every registered defense with one budget and protocol",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help="data set name (fastnoise.data.names(); default digits)")
    p.add_argument("--methods", default="all",
                   help="'all' (default) or comma-separated registered methods; the baselines are always included")
    p.add_argument("--budget", default="quick", help=f"one of {budget_names()} or a JSON budget file (default quick)")
    p.add_argument("--seeds", type=_positive, default=1, help="training seeds 0..N-1 (default 1)")
    p.add_argument("--out", default="runs/leaderboard", help="output folder; an existing one is resumed")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--distributed", action="store_true", help="share the work out over torchrun's ranks")
    p.add_argument("--data-root", default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
