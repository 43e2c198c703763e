"""fastnoise.methods.nit: the NIT / NIT-S / NIT-S+ steps, chunked replicas (peak memory follows the chunk, not
C), the projection Pi_Omega, the STBP / STBP-N baselines on the same network, the errors; the Method:
options, conversion, the replaced update (forward-only), NIT-S+'s schedule across a resume, ordinary nets,
and `fastnoise train --method nit` on digits with resume."""
import json
from pathlib import Path

import pytest
import torch

import fastnoise
from fastnoise import data, methods, models
from fastnoise.methods import nit
from fastnoise.methods import nit as nc
from fastnoise.models import build
from fastnoise.nn import LRLayer, LRLinear, lr_layers
from fastnoise.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[2]


def _spiking(**kw):
    return models.build("spiking_mlp", 4, 1, 8, hidden=48, steps=4, seed=0, sigma_init=0.5, **kw)


def test_peak_memory_follows_the_chunk_not_the_replicas():
    torch.manual_seed(0)
    m = _spiking()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,))
    peak = {}
    for C, chunk in ((4, 4), (32, 4), (32, 32)):
        _, peak[(C, chunk)] = nc.peak_memory(lambda: nc.lr_estimate(m, x, y, replicas=C, chunk=chunk))
    assert peak[(32, 4)] <= 1.2 * peak[(4, 4)], peak
    assert peak[(32, 32)] >= 4 * peak[(4, 4)], peak


def test_nit_training_reduces_the_loss():
    torch.manual_seed(0)
    sp = data.load("synthetic")
    x, y = sp.train.tensors()
    for model, estimator, gain in ((models.build("lr_mlp", 4, 1, 8, width=32, depth=1, sigma_init=0.5, seed=0), "nit", 0.8),
                                   (_spiking(), "nit", 0.8), (_spiking(), "nit_s", 0.9)):  # NIT-S: slower (seed §4.3)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        first = nc.lr_estimate(model, x[:64], y[:64], replicas=8)["loss"]
        for i in range(25):
            idx = torch.randint(0, len(y), (64,))
            nc.nit_step(model, x[idx], y[idx], opt, replicas=8, estimator=estimator)
        last = nc.lr_estimate(model, x[:64], y[:64], replicas=8)["loss"]
        assert last < gain * first, (estimator, first, last)
        assert nc.accuracy(model, x[:128], y[:128]) > 0.4  # 4 classes: chance 0.25


def test_projection_and_bounds():
    m = _spiking()
    with torch.no_grad():
        for layer in lr_layers(m):
            layer.weight.mul_(100)
            layer.sigma.fill_(0.0)
    nc.project_(m, nc.Bounds(theta=0.5, sigma_lo=0.1, sigma_hi=2.0))
    for layer in lr_layers(m):
        assert layer.weight.abs().max() <= 0.5 and layer.bias.abs().max() <= 0.5
        assert torch.all(layer.sigma == 0.1)
    with pytest.raises(ValueError, match="sigma_lo must be <= sigma_hi"):
        nc.Bounds(sigma_lo=2.0, sigma_hi=1.0)
    with pytest.raises(ValueError, match=r"sigma_lo must be a finite number in \(0.0"):
        nc.Bounds(sigma_lo=0.0)


def test_nit_s_plus_schedule():
    assert [nc.estimator_for_epoch("nit_s+", e, 70) for e in (1, 70, 71, 100)] == ["nit_s", "nit_s", "nit", "nit"]
    assert nc.estimator_for_epoch("nit", 5) == "nit" and nc.estimator_for_epoch("nit_s", 99) == "nit_s"
    with pytest.raises(ValueError, match="method must be one of"):
        nc.estimator_for_epoch("sgd", 1)


def test_stbp_and_stbp_n_train_the_same_network():
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,))
    for noise in (False, True):
        m = _spiking()
        nc.set_sigma_(m, 1.0, trainable=False)          # STBP-N: standard-normal noise, sigma not trained
        w0 = lr_layers(m)[0].weight.detach().clone()
        opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
        out = nc.stbp_step(m, x, y, opt, noise=noise)
        assert out["loss"] > 0 and not torch.equal(lr_layers(m)[0].weight, w0)
        assert all(torch.all(layer.sigma == 1.0) for layer in lr_layers(m))


def test_errors_name_the_argument():
    m = _spiking()
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 4, (4,))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"replicas must be an int in \[1"):
        nc.nit_step(m, x, y, opt, replicas=0)
    with pytest.raises(ValueError, match=r"chunk must be an int in \[1"):
        nc.nit_step(m, x, y, opt, replicas=4, chunk=0)
    with pytest.raises(ValueError, match="needs >= 2 replicas in every chunk"):
        nc.nit_step(m, x, y, opt, replicas=5, chunk=2)
    with pytest.raises(ValueError, match="estimator must be one of"):
        nc.nit_step(m, x, y, opt, estimator="lr")
    with pytest.raises(ValueError, match="baseline must be one of"):
        nc.nit_step(m, x, y, opt, baseline="median")
    with pytest.raises(ValueError, match="model has no LR layers"):
        nc.nit_step(models.build("mlp", 4, 1, 8), x, y, opt)
    nc.nit_step(m, x, y, opt, replicas=1, baseline="clean")     # C = 1 works with the clean baseline


# ---- the Method ----------------------------------------------------------------------------------

def _small(seed=0):
    torch.manual_seed(seed)
    return build("spiking_mlp", 10, 1, 8, hidden=12, steps=3, seed=seed)


class _Cfg:
    def __init__(self, epochs=10, **opts):
        self.epochs, self.method_options = epochs, opts


def test_registered_and_described():
    m = methods.get("nit")
    assert m is nit.METHOD and "nit" in methods.names()
    d = m.describe()
    assert d["evaluation"]["stochastic"] and "BPDA" in d["evaluation"]["seed_protocol"]
    assert d["training"]["recipe"] == "standard"


@pytest.mark.parametrize("opts,msg", [
    ({"trainer": "bp"}, "trainer must be one of"),
    ({"replicas": 0}, "replicas must be an int >= 1"),
    ({"sigma_lo": 0.0}, "sigma_lo must be a finite number > 0.0"),
    ({"sigma_lo": 2.0, "sigma_hi": 1.0}, "sigma_lo must be <= sigma_hi"),
    ({"replicas": 1}, "needs >= 2 replicas in every chunk"),
    ({"replicas": 5, "chunk": 2}, "needs >= 2 replicas in every chunk"),
    ({"sigma_init": -1.0}, "sigma_init must be a finite number > 0.0"),
    ({"colour": 1}, "unknown option 'colour'"),
])
def test_bad_options_name_the_option(opts, msg):
    with pytest.raises(ValueError, match=msg):
        methods.get("nit").check_options(opts)


def test_convert_keeps_lr_layers_and_converts_linear_layers():
    m = _small()
    layers = lr_layers(m)
    out = fastnoise.convert(m, "nit", sigma_init=0.5)
    assert out is m and lr_layers(m) == layers and all(float(l.sigma.detach().min()) == 0.5 for l in layers)
    torch.manual_seed(0)
    mlp = build("mlp", 10, 1, 8, width=16, depth=1)
    w0 = mlp[1].net[1].weight.detach().clone()
    fastnoise.convert(mlp, "nit")
    conv = lr_layers(mlp)
    assert len(conv) == 2 and isinstance(conv[0], LRLinear) and torch.equal(conv[0].weight, w0)
    assert float(conv[0].sigma.mean()) == 1.0  # seed Algorithm 1: sigma = 1
    with pytest.raises(ValueError, match="cannot train .*batch norm"):
        fastnoise.convert(build("small_cnn", 10, 1, 8, width=4, hidden=8), "nit")


def test_update_is_forward_only_and_projects():
    """The hook's update fills .grad from forward passes (no autograd graph), steps, and projects onto Omega."""
    m = _small()
    fastnoise.convert(m, "nit", trainer="nit", replicas=4, theta_bound=0.05, sigma_lo=0.9, sigma_hi=0.95)
    hooks = methods.get("nit").hooks(_Cfg(**{"trainer": "nit", "replicas": 4, "theta_bound": 0.05,
                                              "sigma_lo": 0.9, "sigma_hi": 0.95}))
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    before = [p.detach().clone() for p in m.parameters()]
    loss, logits = hooks.update(m, m, opt, x, x, y)
    assert logits.shape == (6, 10) and not logits.requires_grad and torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.grad_fn is None for p in m.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, m.parameters()))
    hooks.after_step(m)
    for l in lr_layers(m):
        assert float(l.weight.abs().max()) <= 0.05 + 1e-7
        assert 0.9 - 1e-7 <= float(l.sigma.min()) and float(l.sigma.max()) <= 0.95 + 1e-7


def test_nit_s_plus_switches_after_switch_epoch_and_survives_resume():
    h = methods.get("nit").hooks(_Cfg(epochs=10, trainer="nit_s+"))
    assert h.switch_epoch == 7 and [h.estimator(e) for e in (1, 7, 8)] == ["nit_s", "nit_s", "nit"]
    assert methods.get("nit").hooks(_Cfg(trainer="nit_s+", switch_epoch=2)).estimator(3) == "nit"
    m = _small()
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    h.update(m, m, opt, x, x, y)
    h.on_epoch_end(m, 7, {})
    assert opt.param_groups[0]["nit_epochs_done"] == 7  # saved with the optimizer state
    fresh = methods.get("nit").hooks(_Cfg(epochs=10, trainer="nit_s+"))  # a resumed run's hooks
    seen = []
    orig = nit.lr_estimate
    try:
        nit.lr_estimate = lambda *a, **k: seen.append(k["estimator"]) or orig(*a, **k)
        fresh.update(m, m, opt, x, x, y)
    finally:
        nit.lr_estimate = orig
    assert seen == ["nit"]


def test_stbp_baselines_use_backprop_with_their_noise():
    m = _small()
    fastnoise.convert(m, "nit", trainer="stbp")
    assert all(l.noise_mode == "off" for l in lr_layers(m))
    assert not fastnoise.nn.is_randomized(m)  # direct encoding + noise off: evaluated as deterministic
    assert methods.get("nit").hooks(_Cfg(trainer="stbp")).update(m, m, None, None, None, None) is None
    n = _small()
    fastnoise.convert(n, "nit", trainer="stbp_n")
    assert all(l.noise_mode == "on" and not l.sigma.requires_grad and float(l.sigma.mean()) == 1.0
               for l in lr_layers(n))


def test_ordinary_network_trains_by_replicated_rows():
    torch.manual_seed(0)
    mlp = fastnoise.convert(build("mlp", 10, 1, 8, width=16, depth=1), "nit", trainer="nit", replicas=3)
    h = methods.get("nit").hooks(_Cfg(trainer="nit", replicas=3))
    opt = torch.optim.SGD(mlp.parameters(), lr=0.1)
    x, y = torch.rand(5, 1, 8, 8), torch.randint(0, 10, (5,))
    loss, logits = h.update(mlp, mlp, opt, x, x, y)
    assert logits.shape == (5, 10)
    assert all(isinstance(l, LRLayer) and l.weight.grad is not None for l in lr_layers(mlp))


def test_fastnoise_train_method_nit_on_digits_resumes(tmp_path):
    cfg = json.loads(open(ROOT / "configs" / "digits_nit.json").read())
    cfg.update(epochs=1, batch_size=256, out_dir=str(tmp_path / "run"), early_stop=False, test_eval=False, quiet=True,
               model_options=dict(cfg["model_options"], hidden=16, steps=2),
               method_options=dict(cfg["method_options"], replicas=2, switch_epoch=1))
    res = fit(TrainConfig.from_dict(cfg))
    assert res["history"][0]["nit_estimator"] == "nit_s"
    res2 = fit(TrainConfig.from_dict(dict(cfg, epochs=2)), resume=True)
    assert [h["nit_estimator"] for h in res2["history"]] == ["nit_s", "nit"]


def test_default_architecture_is_the_methods_spiking_mlp():
    """`fastnoise train --method nit` without --model builds NIT's declared network (TrainingRecipe.model), not
    small_cnn (batch norm: the LR estimator cannot train it); the leaderboard's nit row uses the same."""
    from fastnoise.methods import TrainingRecipe
    from fastnoise.train.loop import build_model
    declared = {"hidden": 100, "steps": 8, "sigma_init": 1.0}
    cfg = TrainConfig(method="nit", model_options={"hidden": 16}).validate()
    assert cfg.resolved_model() == ("spiking_mlp", {**declared, "hidden": 16})  # given options win
    m = build_model(cfg, data.load("synthetic"))
    assert [tuple(l.weight.shape) for l in lr_layers(m)] == [(16, 64), (4, 16)]
    assert TrainConfig(method="nit").diff(TrainConfig(method="nit", model="spiking_mlp", model_options=declared)) == {}
    with pytest.raises(ValueError, match=r"'1.features.1' \(BatchNorm2d\) has parameters"):
        build_model(TrainConfig(method="nit", model="small_cnn").validate(), data.load("synthetic"))
    assert TrainConfig(method="rse").resolved_model() == ("small_cnn", {})  # a method without one: as before
    assert methods.get("nit").describe()["training"]["model"] == "spiking_mlp"
    assert "model" not in methods.get("rse").describe()["training"]  # unchanged description (stored results)
    with pytest.raises(ValueError, match="need a model"):
        TrainingRecipe(model_options={"hidden": 4})


def test_bitops_counts_lr_layers_once_per_computed_row():
    """The LR layers were skipped by fastnoise.bitops (the leaderboard's NIT row read 0 BitOPs): their
    products count as exact, once per computed row (a static input repeated over T steps is multiplied
    once), spike inputs at 1 bit."""
    from fastnoise.nn import LRConv2d
    net = build("spiking_mlp", 10, 1, 8, hidden=100, steps=8)  # direct encoding: static input, spikes after
    r = fastnoise.bitops(net, (4, 1, 8, 8))
    rows = {row["name"]: row for row in r["layers"]}
    assert rows["1.fcs.0"]["macs"] == 64 * 100 and rows["1.fcs.0"]["total"] == 64 * 100 * 32 * 32
    assert rows["1.fcs.1"]["macs"] == 8 * 100 * 10 and rows["1.fcs.1"]["total"] == 8 * 100 * 10 * 32 * 1
    assert r["total"] == r["dense_total"] > 0
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    lr = LRConv2d.from_conv(conv)
    assert fastnoise.bitops(lr, (2, 3, 6, 6))["total"] == fastnoise.bitops(conv, (2, 3, 6, 6))["total"] > 0

    class Rate(torch.nn.Module):  # a [T, B, ...] input: the product runs on every step
        def __init__(self):
            super().__init__()
            self.fc = LRLinear(6, 4)

        def forward(self, x):
            return self.fc(x.unsqueeze(0).expand(5, *x.shape))

    assert fastnoise.bitops(Rate(), (3, 6))["layers"][0]["macs"] == 5 * 6 * 4
