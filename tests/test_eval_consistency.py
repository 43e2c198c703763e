"""The consistency checks of the evaluation report (fastnoise.attacks.evaluate.consistency_warnings):
weak beats strong, accuracy rising with eps, an attack above clean accuracy."""
from fastnoise.attacks.evaluate import consistency_warnings
from fastnoise.attacks.report import format_table


def _row(attack, eps, mean, std=0.0, protocol="eot", bounded=True):
    return {"attack": attack, "eps": eps, "protocol": protocol, "bounded": bounded,
            "accuracy": {"mean": mean, "std": std, "draws": [mean]}}


def test_consistent_report_has_no_warning():
    rows = [_row("pgd20", 0.1, 0.5), _row("fgsm", 0.1, 0.6), _row("pgd20", 0.2, 0.3), _row("square", 0.1, 0.55)]
    assert consistency_warnings(rows, {"mean": 0.9, "std": 0.0}) == []


def test_each_inconsistency_is_one_warning_line():
    rows = [_row("pgd20", 0.1, 0.5), _row("fgsm", 0.1, 0.3),       # FGSM beats PGD-20
            _row("pgd20", 0.2, 0.6),                               # accuracy rises with eps
            _row("square", 0.1, 0.495, std=0.02),                  # within chance: no warning
            _row("cw_l2", None, 0.95, bounded=False)]              # above clean
    w = consistency_warnings(rows, {"mean": 0.9, "std": 0.0})
    assert len(w) == 3, w
    assert w[0].startswith("fgsm (30.0%) beats the stronger white-box pgd20 (50.0%) at eps 0.1 (eot)")
    assert w[1].startswith("pgd20 (eot): robust accuracy rises with eps (50.0% at 0.1, 60.0% at 0.2)")
    assert w[2].startswith("cw_l2 (eot) leaves 95.0% accuracy, above the clean 90.0%")
    res = {"settings": {"n_samples": 4, "randomized": True, "noise_modules": 1, "noise_modes": ["on"], "draws": 1,
                        "protocols": ["eot"], "notes": []},
           "meta": {"model": "M"}, "clean": {"n": 4, "accuracy": {"mean": 0.9, "std": 0.0, "draws": [0.9]}},
           "rows": [], "worst_case": [], "warnings": w}
    assert format_table(res).count("**Warning**: ") == 3
