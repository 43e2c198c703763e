"""CTRW (fastnoise/methods/ctrw.py): conversion at a position, the bounds of Lemmas 1 and 2, sum(sigma)
inside [A, B] after every training step, the two draws of Algorithm 1, Algorithm 2, the ablations,
bad options, resume, the paper configs."""
import math

import pytest
import torch

import fastnoise
from fastnoise import rng
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
    with pytest.raises(ValueError, match=r"site must be one of \['in', 'out', 'both', 'filter'\], got 'after'"):
        fastnoise.convert(small_cnn(), "ctrw", site="after", **SMALL)
    with pytest.raises(ValueError, match=r"site must be one of \('in', 'out', 'both', 'filter'\), got 'after'"):
        CTRWConv2d(1, 2, 3, input_shape=(1, 8, 8), site="after")
    with pytest.raises(ValueError, match="site 'both' .* needs constraint='none', got constraint='bounds'"):
        fastnoise.convert(small_cnn(), "ctrw", site="both", **SMALL)


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


# ---- sites (seed 001 Table 4 "Position Study"): the random weight on the input, output, both, or the filter ----

def _eager(layer, conv, x, state):
    """The site's formula with delta regenerated from the stream (fastnoise.rng.normal) at `state`."""
    seed, off = int(state[0]), int(state[1])
    delta = lambda shape, at: rng.normal(math.prod(shape), seed, at).view(shape)  # noqa: E731
    mu, sig = layer.mu.detach(), layer.sigma.detach()
    if layer.site == "filter":
        return torch.nn.functional.conv2d(x, conv.weight * (mu + sig * delta(mu.shape, off)), conv.bias, padding=1)
    xin = x * (mu + sig * delta(mu.shape, off)) if layer.site in ("in", "both") else x
    y = torch.nn.functional.conv2d(xin, conv.weight, conv.bias, padding=1)
    if layer.site == "out":
        return y * (mu + sig * delta(mu.shape, off))
    if layer.site == "both":
        n_in = (mu.numel() + 3) // 4 * 4  # the out delta follows the in delta in the stream
        return y * (layer.mu_out.detach() + layer.sigma_out.detach() * delta(layer.mu_out.shape, off + n_in))
    return y


SHAPES = {"in": (3, 6, 6), "out": (4, 6, 6), "both": (3, 6, 6), "filter": (4, 3, 3, 3)}


@pytest.mark.parametrize("site", ["in", "out", "both", "filter"])
def test_ctrw_site_formula_zero_sigma_and_state_dict(site):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.rand(2, 3, 6, 6)
    zero = CTRWConv2d.from_conv(conv, input_shape=(3, 6, 6), sigma_init=0.0, seed=1, site=site)
    with torch.no_grad():
        assert torch.equal(zero(x), conv(x))  # mu = 1, sigma = 0: exactly the plain conv, noise on
    layer = CTRWConv2d.from_conv(conv, input_shape=(3, 6, 6), seed=3, site=site)
    with torch.no_grad():
        layer.sigma.uniform_(0.2, 0.6)
        layer.mu.uniform_(0.5, 1.5)
    assert tuple(layer.sigma.shape) == SHAPES[site] and layer.config()["site"] == site
    if site == "both":
        assert tuple(layer.sigma_out.shape) == (4, 6, 6)
    state = layer.stream.state.clone()
    y = layer(x)
    assert torch.allclose(y, _eager(layer, conv, x, state), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        assert not torch.equal(layer(x), layer(x))  # a fresh draw per forward
        out = layer(torch.stack([x[0], x[0]]))
    assert torch.equal(out[0], out[1])  # one draw shared by the batch
    y.sum().backward()
    assert layer.sigma.grad.abs().sum() > 0 and layer.mu.grad.abs().sum() > 0 and conv.weight.grad is not None
    # state-dict round trip: another layer takes the parameters, the stream and the site
    other = CTRWConv2d(3, 4, 3, padding=1, input_shape=(3, 6, 6), site=site)
    other.load_state_dict(layer.state_dict())
    with torch.no_grad():
        assert torch.equal(other(x), layer(x))
    wrong = CTRWConv2d(3, 4, 3, padding=1, input_shape=(3, 6, 6), site="in" if site != "in" else "out")
    with pytest.raises(ValueError, match="site"):
        wrong.load_state_dict(layer.state_dict())


@pytest.mark.parametrize("site", ["out", "both", "filter"])
def test_ctrw_site_converts_and_trains_a_step(tmp_path, site):
    m = fastnoise.convert(small_cnn(), "ctrw", site=site, seed=0, **SMALL,
                          **({"constraint": "none"} if site == "both" else {}))
    layer = ctrw_layer(m)
    assert layer.site == site and tuple(layer.sigma.shape) == {"out": (8, 8, 8), "both": (1, 8, 8),
                                                              "filter": (8, 1, 3, 3)}[site]
    log = SigmaLog()
    opts = {"seed": 0, "site": site, **SMALL, **({"constraint": "none"} if site == "both" else {"lower": 80.0,
                                                                                              "upper": 100.0})}
    r = fit(tiny(tmp_path, "ctrw", opts, epochs=1, batch_size=320), log)
    assert len(log.sums) == 2 and math.isfinite(r["history"][0]["train_loss"])
    if site != "both":  # the bounds hold at the single sites
        assert all(80.0 * (1 - 1e-9) <= s <= 100.0 * (1 + 1e-9) for s in log.sums), log.sums
    else:
        assert r["history"][0]["ctrw_sigma_out_sum"] > 0
    check_state_dict_round_trip("ctrw", opts)
