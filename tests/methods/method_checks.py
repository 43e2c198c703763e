"""Checks every randomized-weight method's tests run (tests/methods/test_{pni,rsr,ctrw,rpf,sal,rse}.py):
conversion of a small CNN and a CIFAR ResNet-18, state-dict round trip, resume of a killed run
bit-for-bit with the method's noise streams, and the paper configs starting (one step on synthetic data
of CIFAR shape). Kept small: the whole of them runs in a few seconds per method on 2 cores."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fastnoise
import fastnoise.data as fd
from fastnoise import models
from fastnoise.nn import noise_mode
from fastnoise.train import Hooks, TrainConfig, fit, train_model
from fastnoise.train.checkpoint import weights_path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def small_cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.build("small_cnn", 10, 1, 8, width=8)


def resnet18(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.build("resnet18", 10, 3, 32)


def check_conversion(method: str, options: dict, layer_types: tuple, n_small: int, n_resnet: int,
                     small_options: dict = None) -> None:
    """Both models convert to `layer_types` (counts `n_small` / `n_resnet`), run, and are randomized."""
    for build, n, extra, shape in ((small_cnn, n_small, small_options or {}, (2, 1, 8, 8)),
                                   (resnet18, n_resnet, {}, (2, 3, 32, 32))):
        model = fastnoise.convert(build(), method, **{**options, **extra}).eval()
        found = [m for m in model.modules() if isinstance(m, layer_types)]
        assert len(found) == n, (build.__name__, len(found))
        x = torch.rand(shape)
        with torch.no_grad():
            a, b = model(x), model(x)
        assert a.shape == (2, 10) and torch.isfinite(a).all()
        assert not torch.equal(a, b)  # fresh noise per forward
        with noise_mode(model, "off"), torch.no_grad():
            assert torch.equal(model(x), model(x))


def check_state_dict_round_trip(method: str, options: dict, build=small_cnn, shape=(2, 1, 8, 8)) -> None:
    """A second conversion (other init) loading the first's state dict computes the same function,
    noise included (the streams are in the state dict)."""
    a = fastnoise.convert(build(0), method, **options).eval()
    b = fastnoise.convert(build(1), method, **options).eval()
    x = torch.rand(shape)
    with torch.no_grad():
        a(x)  # move a's streams on: b must take them over
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        with noise_mode(a, "off"), noise_mode(b, "off"):
            assert torch.equal(a(x), b(x))


class _Kill(Exception):
    pass


class KillAt(Hooks):
    def __init__(self, step: int) -> None:
        self.step, self.n = step, 0

    def after_step(self, model):
        self.n += 1
        if self.n == self.step:
            raise _Kill


def tiny(tmp_path, method: str, options: dict, **kw) -> TrainConfig:
    base = dict(dataset="synthetic", model="small_cnn", model_options={"width": 8}, method=method,
                method_options=options, epochs=2, batch_size=64, lr=0.05, steps=2, quiet=True, test_eval=False,
                early_stop=False, out_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


def _weights(run_dir) -> dict:
    return load_file(str(weights_path(Path(run_dir) / "last.json")))


def check_resume_bit_identical(tmp_path, method: str, options: dict, **kw) -> dict:
    """A run killed in epoch 2 and resumed ends with the same weights, noise streams and history as an
    uninterrupted one (synthetic data: 8 steps per epoch). Returns the full run's weights."""
    cfg = tiny(tmp_path, method, options, out_dir=str(tmp_path / "full"), **kw)
    fit(cfg)
    killed = cfg.replace(out_dir=str(tmp_path / "killed"))
    with pytest.raises(_Kill):
        fit(killed, KillAt(11))
    fit(killed, resume=True)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    streams = [k for k in a if k.endswith("stream.state")]
    assert streams and all(int(a[k][1]) > 0 for k in streams)  # the noise streams moved and match
    ha, hb = (json.loads((tmp_path / d / "last.json").read_text())["history"] for d in ("full", "killed"))
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    return a


def cifar_like(n: int = 2) -> fd.Splits:
    """n random CIFAR-shaped (3 x 32 x 32, 10 classes) samples in every split."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3 * n, 3, 32, 32, generator=g)
    y = torch.arange(3 * n) % 10
    ds = fd.ArrayDataset(x, y)
    tr, va, te = (ds.subset(torch.arange(i * n, (i + 1) * n)) for i in range(3))
    return fd.Splits(name="cifar10", train=tr, val=va, test=te, num_classes=10, input_shape=(3, 32, 32),
                     mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), default_eps=8 / 255, default_alpha=2 / 255,
                     default_steps=10)


def check_paper_config_starts(tmp_path, name: str, method: str) -> dict:
    """configs/<name>.json as written (model, method, options, recipe, eps...) runs one training step
    on 2 synthetic CIFAR-shaped samples (batch 2, one attack step)."""
    d = json.loads((CONFIGS / f"{name}.json").read_text())
    assert d["dataset"] == "cifar10" and d["method"] == method
    cfg = TrainConfig.from_dict({**d, "epochs": 1, "batch_size": 2, "steps": 1, "early_stop": False,
                                 "test_eval": False, "quiet": True, "out_dir": str(tmp_path / name), "device": "cpu"})
    splits = cifar_like(2)
    from fastnoise.train.loop import build_model
    model = build_model(cfg, splits)
    r = train_model(model, splits, cfg)
    assert len(r["history"]) == 1 and r["history"][0]["train_loss"] == r["history"][0]["train_loss"]  # finite, not NaN
    return r


@pytest.fixture(autouse=True)
def one_thread():
    """Autouse in every module that imports it: one intra-op thread (bit-identical resume checks)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
