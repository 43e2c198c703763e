"""RSE (fastnoise/methods/rse.py): conversion, its guarantees, the inference rule, evaluation."""
import pytest
import torch

import fastnoise
import fastnoise.nn as fnn


def test_convert_rse():
    from fastnoise.convert import methods
    assert "rse" in methods()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3), torch.nn.Conv2d(4, 2, 1)))
    fastnoise.convert(model, "rse", sigma=0.2, skip_first=True, seed=10)
    noises = [m for m in model.modules() if isinstance(m, fnn.GaussianNoise)]
    assert len(noises) == 2 and all(m.sigma == 0.2 for m in noises)
    assert isinstance(model[0], torch.nn.Conv2d)
    x = torch.rand(2, 3, 8, 8)
    model.eval()
    assert not torch.equal(model(x), model(x))
    with fnn.noise_mode(model, "off"):
        assert torch.equal(model(x), model(x))
    with pytest.raises(ValueError, match="sigma must be a finite number"):
        fastnoise.convert(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)), "rse", sigma=-1.0)


def test_rse_finds_nothing_to_convert_and_says_what_it_looks_for():
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"method 'rse' found nothing to convert in Sequential: it looks for "
                                         r"torch.nn.Conv2d layers"):
        fastnoise.convert(mlp, "rse")
    assert isinstance(mlp[1], torch.nn.Linear)
    with pytest.raises(ValueError, match="found nothing to convert"):  # the only conv skipped
        fastnoise.convert(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)), "rse", skip_first=True)


def test_rse_shared_conv_is_wrapped_once_and_stays_shared():
    conv = torch.nn.Conv2d(2, 2, 3, padding=1)
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), conv)
    fastnoise.convert(model, "rse", sigma=0.1, seed=0)
    assert isinstance(model[0], torch.nn.Sequential) and model[0] is model[2]
    assert model[0][1] is conv
    assert len([m for m in model.modules() if isinstance(m, fnn.GaussianNoise)]) == 1


def test_rse_all_or_nothing_and_scripted_refused():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Conv2d(2, 2, 3))
    for bad, exc in (({"sigma": float("nan")}, ValueError), ({"seed": -1}, ValueError), ({"skip_first": "no"}, TypeError),
                     ({"sigmas": 0.1}, ValueError)):
        with pytest.raises(exc):
            fastnoise.convert(model, "rse", **bad)
        assert all(isinstance(m, torch.nn.Conv2d) for m in model)  # untouched
    with pytest.raises(TypeError, match="cannot convert a scripted module"):
        fastnoise.convert(torch.jit.script(model), "rse")


def test_rse_root_conv_is_wrapped_and_returned():
    conv = torch.nn.Conv2d(1, 2, 3)
    out = fastnoise.convert(conv, "rse", sigma=0.1, seed=1)
    assert isinstance(out, torch.nn.Sequential) and out[1] is conv and isinstance(out[0], fnn.GaussianNoise)


def test_rse_inference_rule_is_the_mean_softmax_ensemble():
    from fastnoise.methods import get
    from fastnoise.methods.rse import ENSEMBLE
    torch.manual_seed(0)
    model = fastnoise.convert(torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Flatten(), torch.nn.Linear(12, 3)),
                              "rse", sigma=0.5, seed=0).eval()
    method = get("rse")
    assert method.evaluation.stochastic and method.evaluation.draw == "per_sample"
    deployed = method.deploy(model)
    assert isinstance(deployed, fnn.MeanSoftmax) and deployed.model is model and deployed.n == ENSEMBLE == 20
    x = torch.rand(4, 1, 4, 4)
    noise = [m for m in model.modules() if isinstance(m, fnn.GaussianNoise)][0]
    start = int(noise.stream.state[1])
    with torch.no_grad():
        out = deployed(x)
    # the same 20 draws by hand: the layer's stream continues where the ensemble started
    noise.stream.reseed(int(noise.stream.state[0]), start)
    with torch.no_grad():
        probs = torch.stack([torch.softmax(model(x), 1) for _ in range(ENSEMBLE)]).mean(0)
    torch.testing.assert_close(out, probs.log(), rtol=1e-6, atol=1e-6)
    assert fnn.is_randomized(deployed)


# ---- the full RSE recipe: init / inner levels, clean training, the common method checks ----------------

from method_checks import (check_conversion, check_paper_config_starts, check_resume_bit_identical,  # noqa: E402
                           check_state_dict_round_trip, resnet18)


def test_rse_init_and_inner_levels_and_recipe():
    from fastnoise.methods import get
    from fastnoise.train import TrainConfig
    check_conversion("rse", {"seed": 0}, (fnn.GaussianNoise,), 3, 20)
    m = fastnoise.convert(resnet18(), "rse", seed=0)
    levels = [n.sigma for n in m.modules() if isinstance(n, fnn.GaussianNoise)]
    assert levels[0] == 0.2 and set(levels[1:]) == {0.1}  # RobustNet train_rse.sh: init 0.2, inner 0.1
    assert get("rse").training.recipe == "standard" and TrainConfig(method="rse").resolved_recipe() == "standard"
    with pytest.raises(ValueError, match="sigma_first must be a finite number >= 0.0"):
        fastnoise.convert(resnet18(), "rse", sigma_first=-0.2)


def test_rse_state_dict_round_trip_and_resume(tmp_path):
    check_state_dict_round_trip("rse", {"seed": 1})
    check_resume_bit_identical(tmp_path, "rse", {"seed": 1}, recipe=None)


def test_rse_paper_config_starts(tmp_path):
    check_paper_config_starts(tmp_path, "cifar10_rse", "rse")
