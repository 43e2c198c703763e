"""RSR (fastnoise/methods/rsr.py): CNI conversion, pruned weights receive no noise, pruning and
fine-tuning in the trainer, the lasso term, the ablations, bad options, the paper configs."""
import json

import pytest
import torch

import fastnoise
from fastnoise.methods import get
from fastnoise.methods.rsr import RSRHooks, prune, sparsity
from fastnoise.nn import CNIConv2d, CNILinear, is_randomized
from fastnoise.train import load_checkpoint

from method_checks import one_thread  # noqa: F401  (autouse: one intra-op thread)
from method_checks import (check_conversion, check_paper_config_starts, check_resume_bit_identical,
                           check_state_dict_round_trip, small_cnn, tiny)
from fastnoise.train import fit



def test_rsr_converts_every_conv_and_linear():
    check_conversion("rsr", {"seed": 0}, (CNIConv2d, CNILinear), 5, 21)
    layer = [m for m in fastnoise.convert(small_cnn(), "rsr").modules() if isinstance(m, CNIConv2d)][0]
    assert layer.alpha.shape == (layer.out_channels, 1, 1, 1) and float(layer.alpha.mean()) == pytest.approx(0.25)


def test_rsr_state_dict_round_trip_with_a_pruning_mask():
    check_state_dict_round_trip("rsr", {"seed": 2})
    a = fastnoise.convert(small_cnn(0), "rsr", seed=0)
    prune(a, 0.05)
    b = fastnoise.convert(small_cnn(1), "rsr", seed=0)
    b.load_state_dict(a.state_dict())  # the keep masks come along
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_pruned_weights_receive_no_noise():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight[1:].mul_(1e-4)  # output channels 1, 2: every weight below gamma
    layer = CNIConv2d.from_conv(conv, alpha_init=1.0, seed=0)
    before = (layer.weight != 0).float().mean()
    layer.prune_(1e-3)
    assert (layer.weight[1:] == 0).all() and (layer.weight[0] != 0).all() and before == 1
    x = torch.rand(4, 2, 5, 5)
    with torch.no_grad():
        y1, y2 = layer(x), layer(x)
    bias = conv.bias.view(1, -1, 1, 1).expand_as(y1)
    assert torch.equal(y1[:, 1:], bias[:, 1:]) and torch.equal(y2[:, 1:], bias[:, 1:])  # pruned: exactly no noise
    assert not torch.equal(y1[:, 0], y2[:, 0])  # the kept channel stays noisy
    r = prune(torch.nn.Sequential(layer), 1e-3)
    assert r["sparsity"] == pytest.approx(2 / 3)


def test_rsr_prunes_in_training_and_fine_tunes_with_the_mask(tmp_path):
    cfg = tiny(tmp_path, "rsr", {"seed": 0, "gamma": 0.05, "prune_epoch": 1, "lam": 1e-3}, epochs=2)
    r = fit(cfg)
    h = r["history"]
    assert "pruned_gamma" in h[0] and "pruned_gamma" not in h[1]
    assert h[0]["sparsity"] > 0.1 and h[1]["sparsity"] == pytest.approx(h[0]["sparsity"])  # pruned stay 0
    model, _ = load_checkpoint(tmp_path / "run")
    layers = [m for m in model.modules() if isinstance(m, (CNIConv2d, CNILinear))]
    assert all(m.keep is not None and torch.equal(m.keep, m.weight != 0) for m in layers)
    assert sparsity(model) == pytest.approx(h[1]["sparsity"])


def test_rsr_resume_is_bit_identical(tmp_path):
    check_resume_bit_identical(tmp_path, "rsr", {"seed": 1, "lam": 1e-3, "gamma": 0.01})


def test_rsr_lasso_term_and_ablations():
    m = fastnoise.convert(small_cnn(), "rsr")
    h = RSRHooks(0.5, 1e-3, 1e-3, 0)
    l1 = sum(float(l.weight.abs().sum()) for l in m.modules() if isinstance(l, (CNIConv2d, CNILinear)))
    assert float(h.penalty(m)) == pytest.approx(1e-3 * l1, rel=1e-5)
    class C:  # a config: hooks read method_options and epochs
        epochs, method_options = 3, {"variant": "cni"}
    assert get("rsr").hooks(C()).penalty is None and get("rsr").hooks(C()).prune_epoch == 3
    lasso = fastnoise.convert(small_cnn(), "rsr", variant="lasso")
    assert not is_randomized(lasso)


def test_rsr_bad_options_name_the_option():
    for bad, msg in (({"gamma": -1.0}, "gamma must be a finite number >= 0.0"),
                     ({"variant": "both"}, r"variant must be one of \['rsr', 'cni', 'lasso'\]"),
                     ({"lam": float("nan")}, "lam must be a finite number >= 0.0"),
                     ({"prune_epoch": -1}, "prune_epoch must be an int >= 0")):
        with pytest.raises(ValueError, match=msg):
            fastnoise.convert(small_cnn(), "rsr", **bad)
    with pytest.raises(ValueError, match="gamma must be"):
        prune(fastnoise.convert(small_cnn(), "rsr"), -0.5)


@pytest.mark.parametrize("name", ["cifar10_rsr", "cifar10_rsr_resnet20"])
def test_rsr_paper_configs_start(tmp_path, name):
    r = check_paper_config_starts(tmp_path, name, "rsr")
    assert "sparsity" in r["history"][0]
