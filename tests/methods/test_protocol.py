"""The Method protocol (fastnoise/methods/_protocol.py): a method registered from this test file works in
`fastnoise.convert`, `fastnoise train --method` (in process), `fastnoise.bitops` and
`fastnoise.attacks.evaluate`; the generic conversion guarantees; and one test method per extended hook:
(a) the loss from the clean and adversarial batches, (b) attack with one noise draw and update with a
fresh one, (c) the whole update replaced by a forward-only gradient estimator."""
import json
from pathlib import Path

import re

import pytest
import torch
import torch.nn.functional as F

import fastnoise
from fastnoise import methods
from fastnoise.cli import main as cli_main
from fastnoise.methods import (Bits, CostModel, Evaluation, Hooks, LayerCost, Method, Option, TrainingRecipe, number)
from fastnoise.nn import GaussianNoise, MeanSoftmax, NoiseModule
from fastnoise.train import TrainConfig, fit, load_checkpoint
from method_checks import one_thread  # noqa: F401  (autouse: one intra-op thread)


@pytest.fixture
def registered():
    """Register Method instances for one test and remove them afterwards."""
    added = []

    def add(m):
        methods.register(m)
        added.append(m.name)
        return m
    yield add
    for name in added:
        methods.unregister(name)


def tiny(tmp_path, **kw):
    base = dict(dataset="synthetic", model="mlp", model_options={"width": 16}, epochs=1, batch_size=64, lr=0.05,
                quiet=True, test_eval=False, early_stop=False, out_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


# ---- a trivial noise method, defined here -------------------------------------------------------------

class ToyLinear(NoiseModule):
    """y = (x + sigma * N(0, 1)) W^T + b: a noisy Linear holding its own weight (not an nn.Linear)."""

    def __init__(self, linear: torch.nn.Linear, sigma: float, seed: int):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.noise = GaussianNoise(sigma, seed=seed)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x):
        return F.linear(self.noise(x), self.weight, self.bias)


class ToyCost(CostModel):
    """A noisy product priced at twice the exact one (a made-up convention, easy to check)."""

    def claims(self, module):
        return isinstance(module, ToyLinear)

    def cost(self, module, out_per_sample, bits: Bits):
        macs = out_per_sample * module.in_features
        dense = macs * bits.weight * bits.act
        return LayerCost(macs=macs, dense=dense, exact=dense, approx=dense)


class ToyHooks(Hooks):
    calls: list = []

    def after_step(self, model):
        ToyHooks.calls.append("after_step")


class Toy(Method):
    name = "toy_noise"
    description = "a test method: Gaussian input noise inside every Linear"
    looks_for = "torch.nn.Linear layers"
    options = (Option("sigma", 0.1, "noise std", number(lo=0.0)),)
    training = TrainingRecipe(recipe="noisy_fgsm", eps=0.05)
    evaluation = Evaluation(stochastic=True, draw="per_sample", inference=lambda m: MeanSoftmax(m, 2),
                            inference_doc="mean softmax of 2 draws", seed_protocol="one draw per attack step")
    cost = ToyCost()
    example_options = {"sigma": 0.05}

    def targets(self, model, named, opts):
        return [n for n, m in named.items() if type(m) is torch.nn.Linear]

    def replace(self, name, module, index, opts):
        return ToyLinear(module, opts["sigma"], seed=index)

    def hooks(self, config):
        return ToyHooks()


def test_registered_method_is_listed_and_converts(registered):
    registered(Toy())
    assert methods.available()["toy_noise"] == Toy.description
    assert "toy_noise  a test method" in fastnoise.info()
    model = fastnoise.models.build("mlp", 4, 1, 8, width=16)
    out = fastnoise.convert(model, "toy_noise", sigma=0.2)
    toys = [m for m in out.modules() if isinstance(m, ToyLinear)]
    assert out is model and len(toys) == 3 and all(t.noise.sigma == 0.2 for t in toys)
    assert not any(type(m) is torch.nn.Linear for m in out.modules())
    with pytest.raises(ValueError, match=r"method 'toy_noise': unknown option 'sgima'; valid options: sigma"):
        fastnoise.convert(fastnoise.models.build("mlp", 4, 1, 8, width=16), "toy_noise", sgima=0.2)
    with pytest.raises(ValueError, match=r"sigma must be a finite number >= 0.0, got -1"):
        fastnoise.convert(fastnoise.models.build("mlp", 4, 1, 8, width=16), "toy_noise", sigma=-1)
    listed = re.escape(str(sorted(methods.names())))
    assert "'toy_noise'" in listed
    with pytest.raises(ValueError, match=rf"method must be one of {listed}, got 'toy'"):
        fastnoise.convert(model, "toy")
    with pytest.raises(ValueError, match="already registered"):
        methods.register(Toy())


def test_registered_method_trains_through_the_cli_and_reloads(registered, tmp_path, capsys):
    registered(Toy())
    ToyHooks.calls = []
    out = tmp_path / "cli"
    rc = cli_main(["train", "--dataset", "synthetic", "--model", "mlp", "--model-options", '{"width": 16}',
                   "--method", "toy_noise", "--method-options", '{"sigma": 0.05}', "--epochs", "1",
                   "--batch-size", "128", "--quiet", "true", "--test-eval", "false", "--early-stop", "false",
                   "--out-dir", str(out)])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((out / "last.json").read_text())
    assert meta["config"]["method"] == "toy_noise" and meta["config"]["recipe"] is None
    assert meta["attack"] == {"eps": 0.05, "alpha": 0.05, "steps": 5}  # the method's eps, noisy FGSM's alpha = eps
    assert ToyHooks.calls and set(ToyHooks.calls) == {"after_step"}  # the method's hooks ran every step
    model, cfg = load_checkpoint(out)
    assert len([m for m in model.modules() if isinstance(m, ToyLinear)]) == 3
    assert cfg.resolved_recipe() == "noisy_fgsm"
    assert cli_main(["train", "--method", "toy_noise", "--method-options", '{"sigma": -1}']) == 2
    assert "method_options: sigma must be a finite number >= 0.0" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["pni", "rsr", "ctrw", "rpf"])
def test_bitops_counts_noisy_conv_layers_as_dense_products(method):
    """The noise_conv layers (PNI / CNI / CTRW / RPF) are an exact product plus noise: BitOPs of the converted
    model equal those of the plain one (they were counted 0: PNI / RSR rows read "0 (dense)")."""
    torch.manual_seed(0)
    plain = fastnoise.models.build("small_cnn", 10, 1, 8, width=8, hidden=16)
    ref = fastnoise.bitops(plain, (2, 1, 8, 8))
    opts = {"input_size": [8, 8]} if method == "ctrw" else {}
    conv = fastnoise.convert(plain, method, **opts)
    got = fastnoise.bitops(conv, (2, 1, 8, 8))
    assert got["dense_total"] == pytest.approx(ref["dense_total"]) and ref["dense_total"] > 0
    assert len(got["layers"]) == len(ref["layers"])


def test_registered_method_in_bitops_and_evaluate(registered):
    registered(Toy())
    torch.manual_seed(0)
    model = fastnoise.convert(fastnoise.models.build("mlp", 4, 1, 8, width=16), "toy_noise", sigma=0.05).eval()
    r = fastnoise.bitops(model, (2, 1, 8, 8))
    assert [row["type"] for row in r["layers"]] == ["ToyLinear"] * 3
    assert r["total"] == pytest.approx(2 * r["dense_total"])  # the toy cost model priced every layer
    deployed = methods.get("toy_noise").deploy(model)
    assert isinstance(deployed, MeanSoftmax) and deployed.n == 2
    assert fastnoise.bitops(deployed, (2, 1, 8, 8))["total"] == pytest.approx(2 * r["total"])  # 2 passes
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,))
    res = fastnoise.attacks.evaluate(model, (x, y), ["fgsm"], 0.1, eot=2, draws=2, sanity_eps=None,
                                     method="toy_noise")
    assert res["settings"]["method"] == {"name": "toy_noise", "stochastic": True, "draw": "per_sample",
                                         "inference": "mean softmax of 2 draws",
                                         "seed_protocol": "one draw per attack step"}
    assert res["settings"]["randomized"] and res["meta"]["model"] == "MeanSoftmax"
    assert [row["protocol"] for row in res["rows"]] == ["eot", "seed"]


# ---- generic guarantees of Method.convert -----------------------------------------------------------

class FailSecond(Method):
    name = "fail_second"
    description = "a test method whose second replacement fails"
    looks_for = "torch.nn.Linear layers"

    def targets(self, model, named, opts):
        return [n for n, m in named.items() if type(m) is torch.nn.Linear]

    def replace(self, name, module, index, opts):
        if index == 1:
            raise ValueError("cannot build this one")
        return torch.nn.Identity()


def test_conversion_is_all_or_nothing(registered):
    registered(FailSecond())
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="layer '1': cannot build this one"):
        fastnoise.convert(model, "fail_second")
    assert all(type(m) is torch.nn.Linear for m in model)
    with pytest.raises(ValueError, match="method 'fail_second' found nothing to convert in ReLU: it looks for "
                                         "torch.nn.Linear layers"):
        fastnoise.convert(torch.nn.ReLU(), "fail_second")


def test_registration_errors():
    with pytest.raises(TypeError, match="must be a fastnoise.methods.Method"):
        methods.register(object())
    bad = Toy()
    bad.name = "none"
    with pytest.raises(ValueError, match="identifier other than 'none'"):
        methods.register(bad)
    with pytest.raises(ValueError, match="is not registered"):
        methods.unregister("nope")
    assert methods.get("none").convert(torch.nn.ReLU()).__class__ is torch.nn.ReLU  # the baseline
    with pytest.raises(ValueError, match="draw must be one of"):
        Evaluation(stochastic=True, draw="sometimes")
    with pytest.raises(ValueError, match="deterministic method has draw='none'"):
        Evaluation(stochastic=False, draw="per_batch")


# ---- (a) the training loss from the clean and the adversarial batch (PNI / RSR) ----------------------

class MixHooks(Hooks):
    """loss = a CE(f(x), y) + (1 - a) CE(f(x_adv), y) + penalty."""

    def __init__(self, a):
        self.a, self.seen = a, []

    def loss(self, net, x, x_adv, y):
        logits_adv = net(x_adv)
        loss = self.a * F.cross_entropy(net(x), y) + (1 - self.a) * F.cross_entropy(logits_adv, y) + 0.5
        self.seen.append((float((x_adv - x).abs().max()), float(loss.detach()), len(y)))
        return loss, logits_adv


class MixLoss(Method):
    name = "mix_loss"
    description = "a test method training on a*CE(clean) + (1-a)*CE(adv) + 0.5"
    looks_for = "nothing"

    def convert(self, model, **options):  # a training-only method: no layers
        return model

    def hooks(self, config):
        self.h = MixHooks(0.3)
        return self.h


def test_hook_loss_mixes_clean_and_adversarial_batches(registered, tmp_path):
    m = registered(MixLoss())
    r = fit(tiny(tmp_path, method="mix_loss", recipe="pgd", eps=0.1, steps=2))
    seen = m.h.seen
    assert len(seen) == 8 and all(d > 0 for d, _, _ in seen)  # x_adv is the attacked batch, x the clean one
    mean = sum(v * n for _, v, n in seen) / sum(n for _, _, n in seen)
    assert r["history"][0]["train_loss"] == pytest.approx(mean, rel=1e-6)  # the trainer used this loss


# ---- (b) attack with one noise draw, update with a fresh one (CTRW / RPF) ----------------------------

class SharedDraw(NoiseModule):
    """x * (1 + 0.1 * delta) with ONE delta for the whole batch, redrawn only by resample() (CTRW's layer)."""

    def __init__(self, features):
        super().__init__()
        self.features, self.draw, self.log = features, 0, []  # features: x.shape[1:].numel()
        self.gen = torch.Generator().manual_seed(0)
        self.resample()

    def resample(self):
        self.draw += 1
        self.delta = torch.randn(self.features, generator=self.gen)

    def forward(self, x):
        self.log.append(("update" if self.training else "attack", self.draw))
        return x * (1 + 0.1 * self.delta.view(x.shape[1:]))


class TwoDrawHooks(Hooks):
    def before_attack(self, model):
        for m in model.modules():
            if isinstance(m, SharedDraw):
                m.resample()

    def resample_noise(self, model):
        self.before_attack(model)


class TwoDraw(Method):
    name = "two_draw"
    description = "a test method: one shared draw for the attack, a fresh one for the update"
    looks_for = "the model input"
    evaluation = Evaluation(stochastic=True, draw="per_batch", seed_protocol="attack one draw, classify a fresh one")

    def targets(self, model, named, opts):
        return [""]

    def replace(self, name, module, index, opts):
        return torch.nn.Sequential(SharedDraw(64), module)

    def hooks(self, config):
        return TwoDrawHooks()


def test_hook_attack_with_one_draw_update_with_a_fresh_one(registered, tmp_path):
    registered(TwoDraw())
    cfg = tiny(tmp_path, method="two_draw", recipe="pgd", eps=0.1, steps=3)
    from fastnoise import data as fd
    from fastnoise.train import train_model
    from fastnoise.train.loop import build_model
    model = build_model(cfg, fd.load("synthetic"))
    layer = model[0]
    assert isinstance(layer, SharedDraw)
    layer.log.clear()
    train_model(model, fd.load("synthetic"), cfg)
    steps, cur = [], None
    for phase, draw in layer.log:  # group: 3 attack forwards then 1 update forward per step
        if phase == "attack" and (cur is None or cur[-1][0] == "update"):
            cur = []
            steps.append(cur)
        cur.append((phase, draw))
    assert len(steps) == 8
    last_update = None
    for s in steps:
        attack = {d for p, d in s if p == "attack"}
        update = [d for p, d in s if p == "update"]
        assert len(attack) == 1 and len(update) == 1  # every attack step sees the same draw
        assert update[0] != next(iter(attack))  # the update sees a fresh one
        assert next(iter(attack)) != last_update  # and the next attack a fresh one again
        last_update = update[0]


# ---- (c) the whole update replaced by a forward-only estimator (NIT) ---------------------------------

class ForwardOnly(Hooks):
    """A forward-only update: central differences of the loss in every parameter (2 forward passes per
    coordinate, no autograd), then the optimizer step."""

    @torch.no_grad()
    def update(self, model, net, optimizer, x, x_adv, y):
        h = 1e-3
        for p in (p for p in model.parameters() if p.requires_grad):
            g = torch.zeros_like(p)
            flat, gflat = p.view(-1), g.view(-1)
            for i in range(flat.numel()):
                v = float(flat[i])
                flat[i] = v + h
                lp = F.cross_entropy(net(x_adv), y)
                flat[i] = v - h
                lm = F.cross_entropy(net(x_adv), y)
                flat[i] = v
                gflat[i] = (lp - lm) / (2 * h)
            p.grad = g
        optimizer.step()
        logits = net(x_adv)
        return F.cross_entropy(logits, y), logits


class ZerothOrder(Method):
    name = "zeroth_order"
    description = "a test method whose update uses forward passes only"
    looks_for = "nothing"
    training = TrainingRecipe(recipe="standard")

    def convert(self, model, **options):
        return model

    def hooks(self, config):
        return ForwardOnly()


def test_hook_update_replaces_backward(registered, tmp_path, monkeypatch):
    registered(ZerothOrder())
    cfg = tiny(tmp_path, method="zeroth_order", model_options={"width": 4}, lr=0.5, epochs=2)

    def no_backprop(*a, **k):
        raise AssertionError("backpropagation ran")

    monkeypatch.setattr(torch.Tensor, "backward", no_backprop)
    monkeypatch.setattr(torch.autograd, "backward", no_backprop)
    monkeypatch.setattr(torch.autograd, "grad", no_backprop)
    r = fit(cfg)
    h = r["history"]
    assert len(h) == 2 and h[1]["train_loss"] < h[0]["train_loss"]  # it learns from forward passes alone
    assert Path(r["checkpoint"]).exists()


def test_two_hooks_defining_the_step_is_an_error():
    from fastnoise.methods import HookList
    with pytest.raises(ValueError, match="two hooks define the training update"):
        HookList(ForwardOnly(), ForwardOnly())
    with pytest.raises(ValueError, match="two hooks define the training loss"):
        HookList(MixHooks(0.5), HookList(MixHooks(0.5)))


def test_recipe_null_is_the_methods_and_resumes_a_run_saved_with_it(tmp_path):
    cfg = tiny(tmp_path, recipe="pgd", epochs=1)
    fit(cfg)
    r = fit(tiny(tmp_path, recipe=None, epochs=2), resume=True)  # "pgd" saved, null given: the same recipe
    assert [h["epoch"] for h in r["history"]] == [1, 2]
    assert TrainConfig(method="rse").resolved_recipe() == "standard"  # RSE trains on clean data
    with pytest.raises(ValueError, match="cannot resume"):
        fit(tiny(tmp_path, recipe="standard", epochs=3), resume=True)


def test_register_method_decorator_of_the_earlier_api():
    from fastnoise.convert import register_method

    @register_method("legacy_fn")
    def convert_legacy(model, scale=1.0):
        """A conversion function registered the old way."""
        return torch.nn.Sequential(model, torch.nn.Identity())

    try:
        assert methods.available()["legacy_fn"] == "A conversion function registered the old way."
        out = fastnoise.convert(torch.nn.ReLU(), "legacy_fn", scale=2.0)
        assert isinstance(out, torch.nn.Sequential)
    finally:
        methods.unregister("legacy_fn")


def test_a_method_module_that_fails_to_import_fails_every_lookup(monkeypatch, tmp_path):
    """A broken fastnoise/methods/<name>.py must not leave a registry silently missing its methods."""
    import fastnoise.methods as fm
    (tmp_path / "zz_broken.py").write_text("def broken(:\n")
    monkeypatch.setattr(fm, "__path__", list(fm.__path__) + [str(tmp_path)])
    monkeypatch.setattr(fm, "_BUILTINS_LOADED", False)
    for _ in range(2):  # the second lookup fails the same way, it does not see a partial registry
        with pytest.raises(SyntaxError):
            fm.get("rse")
    monkeypatch.setattr(fm, "__path__", [p for p in fm.__path__ if p != str(tmp_path)])
    assert fm.get("rse").name == "rse" and "ctrw" in fm.names()
