"""RPF (fastnoise/methods/rpf.py): the stem's random filters, two draws per step, state dict, resume,
bad options, the paper config."""
import pytest
import torch

import fastnoise
from fastnoise.methods import get
from fastnoise.nn import RPFConv2d

from method_checks import one_thread  # noqa: F401  (autouse: one intra-op thread)
from method_checks import (check_conversion, check_paper_config_starts, check_resume_bit_identical,
                           check_state_dict_round_trip, resnet18, small_cnn)



def test_rpf_converts_the_stem():
    check_conversion("rpf", {"seed": 0}, (RPFConv2d,), 1, 1)
    m = fastnoise.convert(resnet18(), "rpf", seed=0)
    stem = m[1].conv1
    assert isinstance(stem, RPFConv2d) and stem.n_random == 48 and stem.standardize  # 48 of 64, as the RPF code
    m = fastnoise.convert(small_cnn(), "rpf", fraction=0.5, standardize=False, position=1)
    assert isinstance(m[1].features[3], RPFConv2d) and m[1].features[3].n_random == 8
    ev = get("rpf").evaluation
    assert ev.stochastic and ev.draw == "per_batch"


def test_rpf_two_draws_per_step():
    m = fastnoise.convert(small_cnn(), "rpf", seed=0).eval()
    hooks = get("rpf").hooks(None)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        hooks.before_attack(m)
        a1, a2 = m(x), m(x)
        hooks.resample_noise(m)
        u = m(x)
        hooks.after_step(m)
        f1, f2 = m(x), m(x)
    assert torch.equal(a1, a2) and not torch.equal(a1, u) and not torch.equal(f1, f2)


def test_rpf_state_dict_round_trip():
    check_state_dict_round_trip("rpf", {"seed": 5})


def test_rpf_resume_is_bit_identical(tmp_path):
    check_resume_bit_identical(tmp_path, "rpf", {"seed": 1})


def test_rpf_bad_options_name_the_option():
    for bad, msg in (({"fraction": 1.5}, "fraction must be a finite number >= 0.0 and <= 1.0"),
                     ({"fraction": -0.1}, "fraction must be a finite number >= 0.0 and <= 1.0"),
                     ({"position": 7}, r"position must be an int in \[0, 2\]"),
                     ({"standardize": 1}, "standardize must be true or false")):
        with pytest.raises((ValueError, TypeError), match=msg):
            fastnoise.convert(small_cnn(), "rpf", **bad)


def test_rpf_paper_config_starts(tmp_path):
    check_paper_config_starts(tmp_path, "cifar10_rpf", "rpf")
