"""Robust evaluation (DESIGN §7): torchattacks 3.5.1 wrapped with noise kept on, EOT, forward-pass counts.

    atk = make_attack("pgd20", model, 8/255, eot=20)     # adv = atk(x, y); atk.forward_calls
    res = evaluate(model, test_loader, ["pgd20", "fgsm"], [4/255, 8/255], eot=20, draws=5)
    write_reports(res, "runs/eval")                       # results.json, results.md, PNG plots

See `fastnoise.attacks.registry` for what EOT averages and `fastnoise.attacks.evaluate` for the
protocols ("eot" headline vs the labelled "seed protocol"), draws, worst case and the sanity check.
"""
from .registry import ATTACKS, Attack, AttackSpec, EOTModel, ForwardCounter, attack_names, make_attack
from .evaluate import PROTOCOLS, evaluate
from .report import format_table, write_reports

__all__ = ["ATTACKS", "Attack", "AttackSpec", "EOTModel", "ForwardCounter", "attack_names", "make_attack",
           "PROTOCOLS", "evaluate", "format_table", "write_reports"]
