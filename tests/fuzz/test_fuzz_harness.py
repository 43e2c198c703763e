"""Fuzz of the product's entry points above the ops: `fastnoise.convert` (random module trees, shared
modules, every method and option), `fastnoise.attacks.evaluate` (random inputs, labels, models whose logits
go NaN under attack, every argument), checkpoints (round trip of random converted models; damaged files)
and every `TrainConfig` key (the config of `fastnoise train`)."""
from __future__ import annotations

import json
import math

import torch
from hypothesis import given
from hypothesis import strategies as st

import fastnoise
from fastnoise import methods
from fastnoise.train import TrainConfig
from fastnoise.train import checkpoint as ckpt
from fuzzkit import BAD_NUMBERS, COUNTS, OUTCOMES, expect_error, fuzz_settings, run_valid, seeds

N = 20


def _pick(data, mutations):
    """None (valid inputs) half of the time, else one of `mutations`."""
    return None if data.draw(st.booleans()) else data.draw(st.sampled_from(mutations))


# ---- convert ---------------------------------------------------------------------------------------------

def _tree(data, depth=0, pool=None):
    """A random module tree of Conv2d(2, 2, 3, padding=1) / Linear(4, 4) / ReLU / nested Sequential, with
    some modules reused under several names (shared)."""
    pool = [] if pool is None else pool
    kids = []
    for _ in range(data.draw(st.integers(0 if depth else 1, 3))):
        kind = data.draw(st.sampled_from(["conv", "linear", "relu", "seq", "shared"] if depth < 2 else
                                         ["conv", "linear", "relu", "shared"]))
        if kind == "shared" and pool:
            kids.append(data.draw(st.sampled_from(pool)))
            continue
        m = {"conv": lambda: torch.nn.Conv2d(2, 2, 3, padding=1), "linear": lambda: torch.nn.Linear(4, 4),
             "relu": torch.nn.ReLU, "seq": lambda: _tree(data, depth + 1, pool),
             "shared": lambda: torch.nn.Linear(4, 4)}[kind]()
        if kind != "relu":
            pool.append(m)
        kids.append(m)
    return torch.nn.Sequential(*kids)


def _snapshot(model):
    """Everything `convert` must leave untouched when it fails: names, types, identities, tensors."""
    return ([(n, type(m), id(m)) for n, m in model.named_modules(remove_duplicate=False)],
            {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)})


def _option_mutations(method):
    muts = [("bogus_option", {"bogus_option": 1})]
    if method == "nenni":
        muts += [("ratio", {"ratio": v}) for v in (1.0, -0.5, float("nan"), "0.5")]
        muts += [("nm", {"nm": v}) for v in ((3, 2), "2:4")] + [("k", {"k": 0}), ("granularity", {"granularity": "x"}),
                                                                 ("layers", {"ratio": 0.5, "layers": ["nope"]}),
                                                                 ("layers", {"ratio": 0.5, "layers": 3})]
    if method == "rse":
        muts += [("sigma", {"sigma": v}) for v in (-0.1, float("nan"), "0.1")] + [("skip_first", {"skip_first": 2})]
    return muts


def _valid_options(data, method):
    if method == "nenni":
        return {"ratio": data.draw(st.sampled_from([0.5, 0.75])), "skip_first": False, "skip_classifier": False}
    if method == "rse":
        return {"sigma": data.draw(st.sampled_from([0.0, 0.1])), "seed": data.draw(st.integers(0, 5))}
    return {}


_SCRIPTED = []


def _scripted():
    """One scripted module for the whole run (torch.jit.script costs about a second)."""
    if not _SCRIPTED:
        _SCRIPTED.append(torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 4))))
    return _SCRIPTED[0]


# the module types each fuzzed method converts (the newer methods have their own tests in tests/methods)
_CONVERT_KINDS = {"nenni": (torch.nn.Conv2d, torch.nn.Linear), "rse": (torch.nn.Conv2d,)}


@fuzz_settings(15)
@given(st.data())
def test_fuzz_convert(data):
    method = data.draw(st.sampled_from([n for n in methods.names() if n in _CONVERT_KINDS]))
    target = f"convert.{method}"
    model = _tree(data)
    before = _snapshot(model)
    opts = _valid_options(data, method)
    mut = _pick(data, _option_mutations(method) + [("model", "scripted"), ("model", "not a module")])
    if mut is not None:
        arg, change = mut
        if change == "scripted":
            m2 = _scripted()
            expect_error(target, "script", lambda: fastnoise.convert(m2, method, **opts), also=("scripted", "model"))
            return
        if change == "not a module":
            expect_error(target, arg, lambda: fastnoise.convert(3, method, **opts))
            return
        expect_error(target, arg, lambda: fastnoise.convert(model, method, **{**opts, **change}))
        after = _snapshot(model)
        assert before[0] == after[0] and all(torch.equal(v, after[1][k]) for k, v in before[1].items())
        return
    m = methods.get(method)
    kinds = _CONVERT_KINDS[method]
    n_targets = len({id(x) for x in model.modules() if type(x) in kinds})
    if n_targets == 0:  # nothing to convert: an error naming what the method looks for, model untouched
        e = expect_error(target, "model", lambda: fastnoise.convert(model, method, **opts),
                         also=tuple(m.looks_for.split()[:1]))
        assert m.looks_for.split()[0] in str(e) or "nothing" in str(e)
        return
    shared = {}
    for n, x in model.named_modules(remove_duplicate=False):
        shared.setdefault(id(x), []).append(n)
    out = run_valid(target, lambda: fastnoise.convert(model, method, **opts))
    names = dict(out.named_modules(remove_duplicate=False))
    for ident, ns in shared.items():  # a module used under several names is converted once: still one object
        if len(ns) > 1 and all(n in names for n in ns):
            assert len({id(names[n]) for n in ns}) == 1, f"{target}: shared module {ns} split by convert"
    if method == "nenni":  # every target converted (skip options off): no plain Conv2d / Linear left
        assert not [n for n, x in out.named_modules() if type(x) in kinds], f"{target}: not all converted"
    else:  # RSE: every conv has GaussianNoise right before it
        assert sum(isinstance(x, fastnoise.nn.GaussianNoise) for x in out.modules()) == n_targets


# ---- evaluate ------------------------------------------------------------------------------------------

class _Net(torch.nn.Module):
    """A linear classifier on flattened inputs. `poison`: logits NaN for inputs off the 1/255 grid of the
    clean images (so NaN appears only under attack), or NaN input gradients ("grad")."""

    def __init__(self, d, classes, seed, poison=None, out_shape=None):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(classes, d, generator=g))
        self.poison, self.out_shape = poison, out_shape

    def forward(self, x):
        z = x.flatten(1) @ self.w.t()
        if self.poison == "attack":
            off = ((x.flatten(1) * 255 - (x.flatten(1) * 255).round()).abs() > 1e-3).any(1)
            z = torch.where(off[:, None], torch.full_like(z, float("nan")), z)
        if self.poison == "clean":
            z = z.clone()
            z[0] = float("nan")
        if self.out_shape == "flat":
            z = z.flatten()
        if self.out_shape == "extra":
            z = z[:, :, None]
        if self.out_shape == "rows":
            z = z[:-1] if len(z) > 1 else torch.cat([z, z])
        return z


@fuzz_settings(10)
@given(st.data())
def test_fuzz_evaluate(data):
    from fastnoise.attacks import evaluate
    n, c, classes = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 2)), data.draw(st.integers(2, 4))
    g = torch.Generator().manual_seed(data.draw(seeds()))
    x = torch.randint(0, 256, (n, c, 2, 2), generator=g).float() / 255
    y = torch.randint(0, classes, (n,), generator=g)
    poison = data.draw(st.sampled_from([None, None, "attack"]))
    model = _Net(c * 4, classes, data.draw(seeds()), poison=poison)
    kw = {"attacks": data.draw(st.sampled_from(["fgsm", ["fgsm", "pgd20"]])), "eps": 0.0123, "sanity_eps": None,
          "draws": 1, "eot": 1, "steps": {"pgd20": 2}}
    def nan_x():
        bad = x.clone()
        bad.view(-1)[int(torch.randint(0, bad.numel(), (1,), generator=g))] = data.draw(st.sampled_from(
            [float("nan"), float("inf")]))
        return {"loader": (bad, y)}

    muts = [("x", nan_x),
            ("x", lambda: {"loader": (x + 1.5, y)}), ("x", lambda: {"loader": (x - 0.2, y)}),
            ("x", lambda: {"loader": (x.long(), y)}),
            ("y", lambda: {"loader": (x, y.float())}), ("y", lambda: {"loader": (x, y + classes)}),
            ("y", lambda: {"loader": (x, y - 5)}),
            ("y", lambda: {"loader": (x, torch.nn.functional.one_hot(y, classes))}),
            ("y", lambda: {"loader": (x, torch.cat([y, y[:1]]))}), ("y", lambda: {"loader": (x, y.tolist())}),
            ("model", lambda: {"model": _Net(c * 4, classes, 0, out_shape=data.draw(st.sampled_from(
                ["flat", "extra", "rows"])))}),
            ("model", lambda: {"model": _Net(c * 4, classes, 0, poison="clean")}),
            ("model", lambda: {"model": lambda t: t})]
    muts += [("eps", (lambda v: lambda: {"eps": v})(v)) for v in BAD_NUMBERS[:4] + (-0.1,)]
    muts += [("attack", lambda: {"attacks": "nope"}), ("attacks", lambda: {"attacks": []}),
             ("eot", lambda: {"eot": 0}), ("draws", lambda: {"draws": -1}), ("seed", lambda: {"seed": -1}),
             ("device", lambda: {"device": "bogus"}), ("batch_size", lambda: {"batch_size": 0}),
             ("max_samples", lambda: {"max_samples": -1}), ("protocol", lambda: {"protocol": ["nope"]}),
             ("sanity_threshold", lambda: {"sanity_threshold": 2.0}), ("n_classes", lambda: {"n_classes": 1}),
             ("steps", lambda: {"steps": {"fgsm": 0} if False else {"pgd20": -1}, "attacks": "pgd20"}),
             ("attack_kwargs", lambda: {"attack_kwargs": {"fgsm": {"bogus": 1}}, "attacks": "fgsm"})]
    mut = _pick(data, muts)
    args = {"model": model, "loader": (x, y), **kw}
    if mut is not None:
        bad = {**args, **mut[1]()}
        expect_error("attacks.evaluate", mut[0], lambda: evaluate(bad.pop("model"), bad.pop("loader"), **bad),
                     also=("loader's " + mut[0],))
        return
    rep = run_valid("attacks.evaluate", lambda: evaluate(model, (x, y), **kw))
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    assert rep["clean"]["accuracy"]["mean"] == clean
    assert not rep["errors"], rep["errors"]
    for row in rep["rows"]:
        acc = row["accuracy"]["mean"]
        assert acc <= clean + 1e-9, f"robust {acc} above clean {clean}"
        if poison == "attack":  # every attacked input is off the grid: NaN logits, never "robust"
            assert acc == 0.0, row


# ---- checkpoints ----------------------------------------------------------------------------------------

_SPEC = {"name": "small_cnn", "num_classes": 3, "in_channels": 1, "input_size": [8, 8],
         "options": {"width": 2, "hidden": 4}, "mean": [0.5], "std": [0.25]}


@fuzz_settings(N)
@given(data=st.data())
def test_fuzz_checkpoint_round_trip(tmp_path_factory, data):
    method = data.draw(st.sampled_from(["none", "rse", "nenni"]))
    opts = {"none": {}, "rse": {"sigma": data.draw(st.sampled_from([0.0, 0.2]))},
            "nenni": {"ratio": data.draw(st.sampled_from([0.5, 0.9])), "k": data.draw(st.sampled_from([None, 2]))}}[method]
    cfg = TrainConfig(model="small_cnn", model_options=_SPEC["options"], method=method, method_options=opts)
    model = ckpt.build_from_spec(_SPEC, method, opts)
    if method == "nenni" and data.draw(st.booleans()):
        for m in model.modules():
            if isinstance(m, fastnoise.nn.NENNILayer):
                m.quantize_()
    out = tmp_path_factory.mktemp("ck")
    j = run_valid("checkpoint.save+load", lambda: ckpt.save(out / "last", model, cfg, _SPEC, epoch=1))
    loaded, cfg2 = ckpt.load_checkpoint(j)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and cfg2.to_dict() == cfg.to_dict()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert json.loads(json.dumps(a[k])) == json.loads(json.dumps(b[k])), k
    # a damaged checkpoint: an error naming the file, never a traceback from inside safetensors / json
    meta = json.loads(j.read_text())
    weights = out / meta["files"]["weights"] if "weights" in meta.get("files", {}) else ckpt.weights_path(j)
    damage = data.draw(st.sampled_from(["truncate_json", "truncate_weights", "garbage_json", "swap_format",
                                        "drop_weights"]))
    if damage == "truncate_json":
        j.write_text(j.read_text()[: len(j.read_text()) // 2])
    elif damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "garbage_json":
        j.write_text("[1, 2")
    elif damage == "swap_format":
        j.write_text(json.dumps({**meta, "format": "other-1"}))
    else:
        weights.unlink()
    # (a missing file is FileNotFoundError naming it; everything else ValueError naming the file)
    expect_error(f"checkpoint.{damage}", str(j), lambda: ckpt.load_checkpoint(j), also=(str(weights),),
                 types=(FileNotFoundError,) if damage == "drop_weights" else (ValueError,))


# ---- TrainConfig keys (fastnoise train --config) ---------------------------------------------------------

_BAD_CONFIG = {
    "dataset": ["mnist2", 3], "model": ["resnet1000", 3], "model_options": [[], {"width": -1}, {1: 2}],
    "method": ["magic", 0], "method_options": [{"bogus": 1}, "ratio=0.5"], "recipe": ["adv", 1],
    "epochs": [0, -1, 1.5, True], "batch_size": [0, "64"], "lr": [0.0, -1, float("nan"), float("inf")],
    "momentum": [-0.1, float("nan")], "weight_decay": [-1.0], "milestones": [[-1], "10"], "lr_gamma": [0.0, float("nan")],
    "eps": [-0.1, float("nan"), "8/255"], "alpha": [-1.0, float("inf")], "steps": [-1, 2.5],
    "augment": [1, "yes"], "early_stop": [None], "val_samples": [0], "test_eval": ["no"], "seed": [-1, 2 ** 64, 0.5],
    "out_dir": [3, ""], "device": ["gpu", 0], "distributed": [2], "workers": [-1], "quiet": ["false"],
}


@fuzz_settings(3 * N)
@given(st.data())
def test_fuzz_train_config(data):
    valid = {"epochs": data.draw(st.integers(1, 50)), "batch_size": data.draw(st.integers(1, 512)),
             "lr": data.draw(st.floats(1e-4, 1.0)), "seed": data.draw(st.integers(0, 2 ** 63 - 1)),
             "method": data.draw(st.sampled_from(["none", "rse"])), "recipe": data.draw(st.sampled_from(
                 [None, "standard", "pgd", "noisy_fgsm"])), "eps": data.draw(st.one_of(st.none(), st.floats(0, 0.1))),
             "out_dir": "runs/x"}
    if data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(_BAD_CONFIG)))
        value = data.draw(st.sampled_from(_BAD_CONFIG[key]))
        expect_error("train.TrainConfig", key, lambda: TrainConfig.from_dict({**valid, key: value}),
                     also=(f"{key}_options",) if key in ("model", "method") else ())
        return
    if data.draw(st.booleans()):
        expect_error("train.TrainConfig", "unknown", lambda: TrainConfig.from_dict({**valid, "lrate": 0.1}))
        return
    cfg = run_valid("train.TrainConfig", lambda: TrainConfig.from_dict(valid))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
