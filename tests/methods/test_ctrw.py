"""CTRW (fastnoise/methods/ctrw.py): conversion at a position, the bounds of Lemmas 1 and 2, sum(sigma)
inside [A, B] after every training step, the two draws of Algorithm 1, Algorithm 2, the ablations,
bad options, resume, the paper configs."""
import math

import pytest
import torch

import fastnoise
from fastnoise.methods import get
from fastnoise.methods.ctrw import algorithm2, bounds, ctrw_layer, lower_bound
from fastnoise.nn import CTRWConv2d
from fastnoise.train import Hooks, fit

from method_checks import one_thread  # noqa: F401  (autouse: one intra-op thread)
from method_checks import (check_conversion, check_paper_config_starts, check_resume_bit_identical,
                           check_state_dict_round_trip, resnet18, small_cnn, tiny)

SMALL = {"input_size": [8, 8]}



def test_ctrw_converts_the_conv_at_its_position():
    check_conversion("ctrw", {"seed": 0}, (CTRWConv2d,), 1, 1, small_options=SMALL)
    m = fastnoise.convert(resnet18(), "ctrw", seed=0)
    assert isinstance(m[1].conv1, CTRWConv2d) and m[1].conv1.input_shape == (3, 32, 32)
    assert m[1].conv1.sigma.shape == (3, 32, 32) and float(m[1].conv1.sigma.mean()) == 1.0
    assert torch.isnan(m[1].conv1.bounds).all()  # computed on the first training batch
    m = fastnoise.convert(resnet18(), "ctrw", position="1.layers.2.0.conv1")  # before layer 3 (seed Fig. 3d)
    assert m[1].layers[2][0].conv1.input_shape == (128, 16, 16)
    m = fastnoise.convert(small_cnn(), "ctrw", position=2, input_size=[8, 8])
    assert m[1].features[7].input_shape == (16, 4, 4)
    ev = get("ctrw").evaluation
    assert ev.stochastic and ev.draw == "per_batch" and "Algorithm 2" in ev.seed_protocol


def test_ctrw_state_dict_round_trip():
    check_state_dict_round_trip("ctrw", {"seed": 4, **SMALL})


def test_ctrw_lemma_bounds():
    m = fastnoise.convert(small_cnn(), "ctrw", seed=0, **SMALL)
    layer = ctrw_layer(m)
    # Lemma 1 (Eq. 10) by hand: the same two draws of W^r = mu + sigma * delta
    g = torch.Generator().manual_seed(5)
    mu, sig = layer.mu.detach().double(), layer.sigma.detach().double()
    w1 = mu + sig * torch.randn(mu.shape, generator=g, dtype=torch.float64)
    w2 = mu + sig * torch.randn(mu.shape, generator=g, dtype=torch.float64)
    eps_r = 1e-3
    want = (eps_r * float(w1.norm() * w2.norm()) - float(mu.sum())) / (-0.01 * float(w1.abs().sum()))
    assert lower_bound(layer, -0.01, eps_r, seed=5) == pytest.approx(want, rel=1e-12)
    assert 1 / (0.01 * 1.3) < lower_bound(layer, -0.01, 0.0, 0) < 1 / 0.01  # ~ 1 / (|alpha| E|1 + delta|)
    x = torch.rand(16, 1, 8, 8)
    state = layer.stream.state.clone()
    b = bounds(m, x, alpha=-0.01)
    assert torch.equal(layer.stream.state, state)  # the calibration leaves the noise stream where it was
    assert b["B"] > 0 and math.isfinite(b["B"]) and b["m"] == 64 and b["features"] == 256
    b2 = bounds(m, x, alpha=-0.01, eps_y=2.0)
    assert b2["B"] == pytest.approx(2 * b["B"], rel=1e-9)  # B is proportional to eps_y (Eq. 13)


class SigmaLog(Hooks):
    def __init__(self):
        self.sums, self.bounds = [], []

    def after_step(self, model):  # runs after the method's projection
        layer = ctrw_layer(model)
        self.sums.append(float(layer.sigma.detach().abs().sum()))
        self.bounds.append(tuple(float(v) for v in layer.bounds))


@pytest.mark.parametrize("opts", [{}, {"lower": 80.0, "upper": 100.0}], ids=["lemma_bounds", "given_bounds"])
def test_sum_sigma_stays_in_the_bounds_through_training(tmp_path, opts):
    log = SigmaLog()
    fit(tiny(tmp_path, "ctrw", {"seed": 0, "alpha": -0.05, **SMALL, **opts}, epochs=1), log)
    assert len(log.sums) == 8
    a, b = log.bounds[0]
    assert all(bb == (a, b) for bb in log.bounds) and 0 < a
    if opts:
        assert (a, b) == (80.0, 100.0)  # sum(sigma) starts at 64: the first projection lifts it
    hi = max(a, b)
    for s in log.sums:
        assert a * (1 - 1e-9) <= s <= hi * (1 + 1e-9), (s, a, b)


def test_without_constraint_sigma_is_free_and_fixed_std_is_not_trained(tmp_path):
    log = SigmaLog()
    r = fit(tiny(tmp_path, "ctrw", {"seed": 0, "constraint": "none", "lower": 80.0, "upper": 100.0, **SMALL},
                 epochs=1), log)
    assert all(s < 80.0 for s in log.sums)  # never projected up to the lower bound
    assert r["history"][0]["ctrw_sigma_sum"] == pytest.approx(log.sums[-1])
    log = SigmaLog()
    fit(tiny(tmp_path, "ctrw", {"seed": 0, "constraint": "fixed", "lower": 32.0, **SMALL}, epochs=1,
             out_dir=str(tmp_path / "fixed")), log)
    assert all(s == pytest.approx(32.0) for s in log.sums)


def test_two_draws_attack_with_delta1_update_with_delta2():
    m = fastnoise.convert(small_cnn(), "ctrw", seed=0, **SMALL).eval()
    hooks = get("ctrw").hooks(type("C", (), {"method_options": SMALL})())
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        hooks.before_attack(m)
        a1, a2 = m(x), m(x)  # the attack's steps: one fixed draw
        hooks.resample_noise(m)
        u = m(x)
        hooks.after_step(m)
        f1, f2 = m(x), m(x)  # deployed: a fresh draw per forward
    assert torch.equal(a1, a2) and not torch.equal(a1, u) and not torch.equal(f1, f2)


def test_algorithm2_attacks_one_draw_and_classifies_another():
    m = fastnoise.convert(small_cnn(), "ctrw", seed=0, **SMALL).eval()
    layer = ctrw_layer(m)
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 10
    before = int(layer.stream.state[1])
    r = algorithm2(m, x, y, eps=0.1, alpha=0.05, steps=3)
    assert 0 <= r["robust"] <= 1 and r["n"] == 8 and "Algorithm 2" in r["protocol"]
    assert int(layer.stream.state[1]) > before and layer.resample_mode == "forward"


def test_ctrw_resume_is_bit_identical(tmp_path):
    w = check_resume_bit_identical(tmp_path, "ctrw", {"seed": 2, "alpha": -0.05, **SMALL})
    key = [k for k in w if k.endswith("bounds")][0]
    assert torch.isfinite(w[key]).all()


def test_ctrw_bad_options_name_the_option():
    for bad, msg in (({"position": 3}, r"position must be an int in \[0, 2\] \(the model has 3 Conv2d layers"),
                     ({"position": "features.9"}, r"position must be an int in \[0, 2\] or the name of a Conv2d"),
                     ({"sigma_init": -1.0}, "sigma_init must be a finite number >= 0.0"),
                     ({"alpha": 0.001}, "alpha must be a finite number < 0.0"),
                     ({"constraint": "soft"}, r"constraint must be one of \['bounds', 'none', 'fixed'\]"),
                     ({"lower": 10.0, "upper": 5.0}, "lower must be <= upper"),
                     ({"input_size": [8]}, r"input_size must be \[H, W\]"),
                     ({"input_size": [2, 2]}, "input_size must be .* a forward of shape")):
        with pytest.raises(ValueError, match=msg):
            fastnoise.convert(small_cnn(), "ctrw", **{**SMALL, **bad})


@pytest.mark.parametrize("name", ["cifar10_ctrw"])
def test_ctrw_paper_config_starts(tmp_path, name):
    r = check_paper_config_starts(tmp_path, name, "ctrw")
    h = r["history"][0]
    assert h["ctrw_A"] > 0 and math.isfinite(h["ctrw_B"])


def test_default_alpha_is_the_seeds_scaled_to_the_input_size():
    from fastnoise.methods.ctrw import scaled_alpha
    assert scaled_alpha(3 * 32 * 32) == -1e-3 and scaled_alpha(64) == pytest.approx(-0.048)
    with pytest.raises(ValueError, match=r"m must be an int in \[1, inf\], got 0"):
        scaled_alpha(0)
