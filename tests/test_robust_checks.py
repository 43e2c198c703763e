"""The evaluation never reports robustness that is not there: inputs, labels and logits are validated
before attacking, and a NaN during an attack (non-finite adversarial input, logits or gradient) counts as
a failed sample; `fastnoise eval` exits non-zero when every attack failed."""
import json

import pytest
import torch
import torch.nn as nn

from fastnoise import train
from fastnoise.attacks import evaluate
from fastnoise.cli import main


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.8 + 0.1
    y = torch.randint(0, 4, (n,), generator=g)
    x[:, 0, 0, 0] = torch.where(y == 0, 0.95, 0.05)  # a marker pixel: label-0 images
    return x, y


def _lin(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))


class NanOnLabel0(nn.Module):
    """Logits NaN for the marked (label-0) images: the issue's model (clean 100%, FGSM "robust" 100%)."""

    def __init__(self):
        super().__init__()
        self.lin = _lin()

    def forward(self, x):
        out = self.lin(x)
        return torch.where((x[:, 0, 0, 0] > 0.5)[:, None], torch.full_like(out, float("nan")), out)


class NanGradient(nn.Module):
    """Finite logits everywhere (class 0 by a wide margin) but a NaN input gradient for the marked images:
    sqrt at 0 of z = 0 * x (d sqrt / dz = inf, dz / dx = 0)."""

    def __init__(self):
        super().__init__()
        self.lin = _lin()
        self.register_buffer("bias", torch.tensor([6.0, 0.0, 0.0, 0.0]))

    def forward(self, x):
        m = (x[:, :1, 0, 0] > 0.5).to(x.dtype)
        z = x[:, :1, 0, 0] * 0 * m + (1 - m)
        return 1e-3 * self.lin(x) + self.bias + torch.sqrt(z) - (1 - m)


def _ev(model, x, y, attacks=("fgsm",), **kw):
    kw = {"eot": 1, "draws": 1, "sanity_eps": None, **kw}
    return evaluate(model, (x, y), list(attacks), 0.03, **kw)


def test_nan_logits_on_clean_inputs_are_refused():
    x, y = _data()
    with pytest.raises(ValueError, match=r"non-finite logits \(NaN or inf\) on \d+ clean inputs"):
        _ev(NanOnLabel0(), x[y == 0], y[y == 0])
    with pytest.raises(ValueError, match="non-finite logits"):
        _ev(NanOnLabel0(), x, y)


@pytest.mark.parametrize("attack", ["fgsm", "pgd20", "autoattack_rand"])
def test_nan_gradients_count_as_failed_samples(attack):
    x, y = _data()
    y = torch.zeros_like(y)  # the model predicts 0 everywhere: robust 100% unless NaN is credited
    marked = int((x[:, 0, 0, 0] > 0.5).sum())
    assert 0 < marked < len(y)
    kw = {"steps": {attack: 2}} if attack != "fgsm" else {}
    res = _ev(NanGradient(), x, y, [attack], **kw)
    assert res["clean"]["accuracy"]["mean"] == 1.0
    row = res["rows"][0]
    assert row["nonfinite_samples"] == marked
    assert row["accuracy"]["mean"] == pytest.approx(1 - marked / len(y))
    assert res["worst_case"][0]["accuracy"]["mean"] == pytest.approx(1 - marked / len(y))


def test_nan_adversarial_logits_count_as_wrong():
    """Logits NaN only off the data (e.g. under attack): argmax(NaN) = 0 used to match label 0."""
    class NanAway(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = _lin()
            self.register_buffer("x0", _data()[0])

        def forward(self, x):
            out = 1e-3 * self.lin(x) + torch.tensor([6.0, 0, 0, 0])
            far = (x - self.x0[: len(x)]).abs().flatten(1).amax(1) > 1e-3 if len(x) == len(self.x0) else \
                torch.ones(len(x), dtype=torch.bool)
            return torch.where(far[:, None], torch.full_like(out, float("nan")), out)

    x, _ = _data()
    y = torch.zeros(len(x), dtype=torch.long)
    res = _ev(NanAway(), x, y, ["fgsm"], batch_size=len(x))
    assert res["clean"]["accuracy"]["mean"] == 1.0 and res["rows"][0]["accuracy"]["mean"] == 0.0


@pytest.mark.parametrize("make,exc,match", [
    (lambda x, y: (torch.where(torch.arange(len(x))[:, None, None, None] == 3, float("nan"), x), y), ValueError,
     r"x must be finite: 1 of 32 samples hold NaN or inf \(first: sample 3\)"),
    (lambda x, y: (x.clone().index_fill_(0, torch.tensor([0]), float("inf")), y), ValueError, "x must be finite"),
    (lambda x, y: (x * 2, y), ValueError, r"x must lie in \[0, 1\]"),
    (lambda x, y: (x, y + 4), ValueError, r"y must be class indices in \[0, 4\) \(the model's classes\), got values in \[4, 7\]"),
    (lambda x, y: (x, y - 1), ValueError, r"y must be class indices in \[0, 4\)"),
    (lambda x, y: (x, y.float()), TypeError, "y must hold integer class indices .* got torch.float32"),
    (lambda x, y: (x, y.bool()), TypeError, "y must hold integer class indices"),
    (lambda x, y: (x, nn.functional.one_hot(y, 4)), ValueError, r"y must have shape \[N\] = \[32\] .*one-hot"),
    (lambda x, y: (x, y[:5]), ValueError, r"y must have shape \[N\] = \[32\]"),
    (lambda x, y: (x.int(), y), TypeError, "x must be a floating tensor"),
])
def test_bad_inputs_and_labels_are_refused(make, exc, match):
    x, y = make(*_data())
    with pytest.raises(exc, match=match):
        _ev(_lin(), x, y)


def test_bad_logits_shapes_are_refused():
    x, y = _data()

    class Broadcast(nn.Module):  # one row of logits for any batch: used to get a clean accuracy by broadcasting
        def forward(self, x):
            return torch.tensor([[0.0, 1.0, 0.0, 0.0]]) + 0 * x.sum()

    with pytest.raises(ValueError, match=r"logits of shape \[N, classes\] = \[32, 4\] for a batch of 32, got \(1, 4\)"):
        _ev(Broadcast(), x, torch.ones_like(y))

    class Flat(nn.Module):
        def forward(self, x):
            return x.flatten(1).sum(1)

    with pytest.raises(ValueError, match=r"for a batch of 1 it returned \(1,\)"):
        _ev(Flat(), x, y)
    with pytest.raises(ValueError, match=r"logits of shape \[N, classes\] = \[32, 10\]"):
        _ev(_lin(), x, y, n_classes=10)


@pytest.mark.parametrize("kw,exc,match", [
    ({"seed": 2 ** 64}, ValueError, r"seed must be an int in \[0, 2\*\*62\]"),
    ({"n_classes": 1}, ValueError, "n_classes must be None"),
    ({"sanity_threshold": 2}, ValueError, "sanity_threshold must be a number in"),
    ({"device": "gpu7"}, ValueError, "device must be a torch device"),
    ({"steps": {"fgsm": 3}}, ValueError, r"steps\['fgsm'\]: steps must be None for attack 'fgsm'"),
    ({"attack_kwargs": {"fgsm": {"bogus": 1}}}, TypeError, r"attack_kwargs\['fgsm'\]"),
    ({"attack_kwargs": {"fgsm": 3}}, TypeError, r"attack_kwargs\['fgsm'\] must be a dict"),
    ({"log": 3}, TypeError, "log must be None or a callable"),
])
def test_bad_arguments_fail_before_attacking(kw, exc, match):
    x, y = _data()
    with pytest.raises(exc, match=match):
        _ev(_lin(), x, y, **kw)
    with pytest.raises(TypeError, match="attack must be a name"):
        _ev(_lin(), x, y, [["fgsm"]])


def test_eval_exits_nonzero_when_every_attack_failed(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = train.TrainConfig(dataset="synthetic", model="mlp", model_options={"width": 8}, recipe="standard", epochs=1,
                            batch_size=128, early_stop=False, test_eval=False, out_dir=str(out), device="cpu",
                            quiet=True)
    ckpt = train.fit(cfg)["checkpoint"]
    base = ["eval", "--checkpoint", ckpt, "--max-samples", "8", "--no-sanity", "--eot", "1", "--draws", "1"]
    # tifgsm needs RGB images: on 1-channel data it fails, and it is the only attack
    assert main(base + ["--attacks", "tifgsm", "--out", str(tmp_path / "e1")]) == 1
    assert "every attack failed (tifgsm eps=" in capsys.readouterr().err
    assert json.loads((tmp_path / "e1" / "results.json").read_text())["errors"]
    assert main(base + ["--attacks", "tifgsm,fgsm", "--out", str(tmp_path / "e2")]) == 0  # one attack ran


def test_nonfinite_adversarial_inputs_are_never_classified_as_robust():
    from fastnoise.attacks.evaluate import _correct
    x, _ = _data()
    model = NanGradient().eval()  # class 0 everywhere, finite logits even for NaN inputs' neighbours
    y = torch.zeros(len(x), dtype=torch.long)
    adv = x.clone()
    adv[[2, 5]] = float("nan")
    adv[7, 0, 3, 3] = float("inf")
    ok = _correct(model, adv, y, 8, 2, 0, 4)
    assert ok.shape == (2, 32) and not ok[:, [2, 5, 7]].any() and ok.sum() == 2 * 29
