"""SAL + noisy FGSM (fastnoise/methods/sal.py): the SAL in front of the model, its recipe, state dict,
resume, bad options, the paper config."""
import pytest
import torch

import fastnoise
from fastnoise.methods import get
from fastnoise.nn import SAL
from fastnoise.train import TrainConfig

from method_checks import one_thread  # noqa: F401  (autouse: one intra-op thread)
from method_checks import (check_conversion, check_paper_config_starts, check_resume_bit_identical,
                           check_state_dict_round_trip, resnet18, small_cnn)

SMALL = {"input_size": [8, 8]}



def test_sal_goes_in_front_of_the_model():
    check_conversion("sal", {"seed": 0}, (SAL,), 1, 1, small_options=SMALL)
    base = resnet18()
    m = fastnoise.convert(base, "sal", seed=0)
    assert isinstance(m, torch.nn.Sequential) and isinstance(m[0], SAL) and m[1] is base
    assert m[0].w.shape == (3, 32, 32)  # one weight and bias per input feature (seed 003 §5)
    m = fastnoise.convert(small_cnn(), "sal", per_feature=False)
    assert m[0].w.shape == (1, 1, 1)
    assert get("sal").training.recipe == "noisy_fgsm" and TrainConfig(method="sal").resolved_recipe() == "noisy_fgsm"
    assert get("sal").evaluation.draw == "per_sample"
    with pytest.raises(ValueError, match="already holds a SAL"):
        fastnoise.convert(m, "sal", per_feature=False)


def test_sal_state_dict_round_trip():
    check_state_dict_round_trip("sal", {"seed": 1, **SMALL})


def test_sal_resume_is_bit_identical(tmp_path):
    w = check_resume_bit_identical(tmp_path, "sal", {"seed": 1, **SMALL}, recipe=None)
    assert "0.w" in w and not torch.equal(w["0.w"], torch.zeros_like(w["0.w"]))  # the SAL learned


def test_sal_bad_options_name_the_option():
    for bad, msg in (({"init_std": 0.0}, "init_std must be a finite number > 0.0"),
                     ({"input_size": [12, 12]}, "input_size must be .* a forward of shape"),
                     ({"per_feature": "yes"}, "per_feature must be true or false")):
        with pytest.raises((ValueError, TypeError), match=msg):
            fastnoise.convert(small_cnn(), "sal", **bad)


def test_sal_paper_config_starts(tmp_path):
    check_paper_config_starts(tmp_path, "cifar10_sal", "sal")
