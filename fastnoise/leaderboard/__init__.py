"""One honest leaderboard: every registered defense trained with one budget and attacked with one protocol.

    board = fastnoise.leaderboard.run("digits", methods="all", budget="quick", seeds=1, out="runs/leaderboard")
    print(fastnoise.leaderboard.format_table(board))      # also DIR/leaderboard.md, leaderboard.json, *.png
    print(fastnoise.leaderboard.summary(board))

    fastnoise leaderboard --dataset digits --methods all --budget quick --seeds 3 --out runs/leaderboard
    torchrun --nproc-per-node 2 -m fastnoise leaderboard ... --distributed

The rows come from the method registry (`fastnoise.methods.names()`: a method registered anywhere, e.g.
by a test, appears without a change here) plus two baselines that are always present: "standard"
(standard training, no adversarial examples) and "none" (PGD-AT). Each is trained with the shared
`Budget` (same architecture, epochs, training attack) and its own recipe (`Method.training`: a method
with ``start="trained"`` converts the PGD-AT-trained model and runs its post-conversion recipe), then
evaluated as deployed (`Method.deploy`): clean, FGSM, EOT PGD-20, AutoAttack rand, Square, per-sample
worst case, accuracy vs eps (PGD-20, >= 4 eps), accuracy vs EOT draws, the eps = 1 sanity check, and the
method paper's own protocol (labelled) with the gap "seed protocol − adaptive". See docs/robustness.md.
"""
from ._budget import BUDGETS, Budget, budget_names, get_budget
from ._report import format_table, summary
from ._run import ATTACKS, FORMAT, Entry, all_entries, check_out_dir, run, select_entries

__all__ = ["run", "format_table", "summary", "Budget", "BUDGETS", "budget_names", "get_budget", "Entry",
           "all_entries", "select_entries", "check_out_dir", "ATTACKS", "FORMAT"]
