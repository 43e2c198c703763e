"""The consistency checks of robust-evaluation results (fastnoise.attacks.consistency.consistency_checks), the one
source of the evaluation report's warnings (fastnoise.attacks.evaluate.consistency_warnings) and of the
leaderboard's flags (fastnoise.leaderboard._report._flags): each check fires, the tolerance rule (one sample or
two inference-draw stds), and both users report the same checks."""
import pytest

from fastnoise.attacks.consistency import KINDS, ORDER, consistency_checks, tolerance
from fastnoise.attacks.evaluate import consistency_warnings
from fastnoise.attacks.report import format_table
from fastnoise.leaderboard import _report

CLEAN = {"mean": 0.9, "std": 0.0}
SANITY_OK = {"attack": "pgd20", "eps": 1.0, "passed": True, "accuracy": {"mean": 0.0, "std": 0.0}, "threshold": 0.05}


def _row(attack, eps, mean, std=0.0, protocol="eot", bounded=True, n=100):
    return {"attack": attack, "eps": eps, "protocol": protocol, "bounded": bounded, "n": n,
            "accuracy": {"mean": mean, "std": std, "draws": [mean]}}


def test_consistent_report_has_no_warning():
    rows = [_row("pgd20", 0.1, 0.5), _row("fgsm", 0.1, 0.6), _row("pgd20", 0.2, 0.3), _row("square", 0.1, 0.55),
            _row("autoattack_rand", 0.1, 0.45)]  # a stronger attack lower than a weaker one: fine
    assert consistency_warnings(rows, CLEAN, SANITY_OK) == []
    assert consistency_checks(rows, CLEAN, SANITY_OK, errors=[]) == []


def test_each_inconsistency_is_one_warning_line():
    rows = [_row("pgd20", 0.1, 0.5), _row("fgsm", 0.1, 0.3),       # FGSM beats PGD-20
            _row("pgd20", 0.2, 0.6),                               # accuracy rises with eps
            _row("square", 0.1, 0.495, std=0.02),                  # within chance: no warning
            _row("cw_l2", None, 0.95, bounded=False)]              # above clean
    w = consistency_warnings(rows, CLEAN)
    assert len(w) == 3, w
    assert w[0].startswith("fgsm (30.0%) beats the stronger white-box pgd20 (50.0%) at eps 0.1 (eot)")
    assert w[1].startswith("pgd20 (eot): robust accuracy rises with eps (50.0% at 0.1, 60.0% at 0.2)")
    assert w[2].startswith("cw_l2 (eot) leaves 95.0% accuracy, above the clean 90.0%")
    res = {"settings": {"n_samples": 4, "randomized": True, "noise_modules": 1, "noise_modes": ["on"], "draws": 1,
                        "protocols": ["eot"], "notes": []},
           "meta": {"model": "M"}, "clean": {"n": 4, "accuracy": {"mean": 0.9, "std": 0.0, "draws": [0.9]}},
           "rows": [], "worst_case": [], "warnings": w}
    assert format_table(res).count("**Warning**: ") == 3


@pytest.mark.parametrize("kind", KINDS)
def test_each_check_fires(kind):
    """One inconsistency of each kind, alone: exactly one finding, of that kind, with a flag and a warning."""
    rows, clean, sanity, errors = [_row("pgd20", 0.1, 0.5), _row("fgsm", 0.1, 0.6)], CLEAN, SANITY_OK, []
    if kind == "weaker_beats_stronger":
        rows[1] = _row("fgsm", 0.1, 0.3)
    elif kind == "rises_with_eps":
        rows.append(_row("pgd20", 0.2, 0.7))
    elif kind == "above_clean":
        rows.append(_row("deepfool", None, 0.95, bounded=False))
    elif kind == "sanity_failed":
        sanity = {**SANITY_OK, "passed": False, "accuracy": {"mean": 0.4, "std": 0.0}}
    else:
        errors = [{"attack": "square", "eps": 0.1, "protocol": "eot", "error": "RuntimeError: boom"}]
    found = consistency_checks(rows, clean, sanity, errors)
    assert [f.kind for f in found] == [kind], found
    assert found[0].flag and found[0].warning
    # the evaluation report and the leaderboard report this finding (evaluate's warnings leave out failed
    # attacks: its table lists them as failed rows)
    assert consistency_warnings(rows, clean, sanity) == ([] if kind == "attack_failed" else [found[0].warning])
    board_result = {"main": {"rows": rows[:2], "clean": {"n": 100, "accuracy": clean}, "sanity": sanity,
                             "errors": errors},
                    "curve": {"rows": rows[2:], "errors": []}, "seed_protocol": {"result": None}}
    assert _report._flags(board_result) == [found[0].flag]


def test_the_order_pairs():
    assert ("fgsm", "pgd20") in ORDER and ("square", "autoattack_rand") in ORDER
    assert ("pgd20", "autoattack_rand") in ORDER
    assert ("autoattack_rand", "pgd20") not in ORDER and ("pgd20", "fgsm") not in ORDER
    # only the same eps and protocol are compared
    rows = [_row("pgd20", 0.1, 0.5), _row("fgsm", 0.2, 0.3), _row("fgsm", 0.1, 0.3, protocol="seed")]
    assert [f.kind for f in consistency_checks(rows)] == []


@pytest.mark.parametrize("n,std,diff,flagged", [
    (100, 0.0, 0.009, False), (100, 0.0, 0.011, True),      # one sample of 100 = 1 point
    (1000, 0.0, 0.002, True),                               # one sample of 1000 = 0.1 point
    (1000, 0.02, 0.039, False), (1000, 0.02, 0.041, True),  # two inference-draw stds = 4 points
])
def test_tolerance_is_one_sample_or_two_draw_stds(n, std, diff, flagged):
    assert tolerance(n, 0.0, std) == pytest.approx(max(1 / n, 2 * std))
    rows = [_row("pgd20", 0.1, 0.5, n=n), _row("fgsm", 0.1, 0.5 - diff, std=std, n=n)]
    assert bool(consistency_checks(rows)) == flagged
    assert bool(consistency_warnings(rows, CLEAN)) == flagged


@pytest.mark.parametrize("n_strong,n_weak,acc_strong,acc_weak,flagged", [
    (32, 128, 0.781, 0.734, False),   # AutoAttack on the first 32 of 128 images (the methods table): 2 SE = 13 points
    (32, 128, 0.90, 0.70, True),      # 20 points: more than sampling explains
    (1000, 1050, 0.50, 0.49, True),   # nearly the same images: 2 SE = 0.7 points, one sample = 0.1
])
def test_tolerance_of_different_sample_counts(n_strong, n_weak, acc_strong, acc_weak, flagged):
    p = (acc_strong + acc_weak) / 2
    lo, hi = sorted((n_strong, n_weak))
    assert tolerance(n_strong, 0.0, n_other=n_weak, p=p) == pytest.approx(
        max(1 / lo, 2 * (p * (1 - p) * (1 / lo - 1 / hi)) ** 0.5))
    rows = [_row("autoattack_rand", 0.2, acc_strong, n=n_strong), _row("pgd20", 0.2, acc_weak, n=n_weak)]
    assert bool(consistency_checks(rows)) == flagged
