"""fastnoise.train: recipes learn, resume is bit-identical, checkpoints are safe and checked, hooks
run in order, bad configs are clear errors (API and CLI)."""
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fastnoise
import fastnoise.data as fd
from fastnoise.cli import main as cli_main
from fastnoise.nn import NoiseModule
from fastnoise.rng import PhiloxStream
from fastnoise.train import Hooks, TrainConfig, fit, load_checkpoint, noisy_fgsm, pgd, train_model
from fastnoise.train.checkpoint import read, weights_path
from fastnoise.train.loop import attack_mode, build_model


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: threads only contend
    yield
    torch.set_num_threads(before)


def tiny(tmp_path, **kw):
    base = dict(dataset="synthetic", model="small_cnn", model_options={"width": 8}, epochs=2, batch_size=64, lr=0.05,
                quiet=True, test_eval=False, out_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


def test_pgd_adversarial_training_learns(tmp_path):
    r = fit(tiny(tmp_path, epochs=3, test_eval=True, milestones=[2]))
    assert r["test_clean"] >= 0.95 and r["test_robust"] >= 0.85, r
    assert r["best_epoch"] is not None and Path(r["checkpoint"]).name == "best.json"
    assert [h["epoch"] for h in r["history"]] == [1, 2, 3]
    assert [h["lr"] for h in r["history"]] == pytest.approx([0.05, 0.05, 0.005])  # the lr each epoch used
    assert "PGD-5 eps=0.1 alpha=0.05" in r["test_attack"]


def test_noisy_fgsm_and_standard_recipes_run(tmp_path):
    for recipe in ("noisy_fgsm", "standard"):
        r = fit(tiny(tmp_path, recipe=recipe, epochs=1, early_stop=False, out_dir=str(tmp_path / recipe)))
        assert Path(r["checkpoint"]).name == "last.json" and r["history"][0]["train_acc"] > 0.3


def test_attacks_respect_budget_and_range():
    torch.manual_seed(0)
    model = fastnoise.models.build("mlp", 4, 1, 8, width=16).eval()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 4, (8,))
    start = torch.rand_like(x) * 2 - 1
    adv = pgd(model, x, y, 0.1, 0.03, 5, start)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    loss = torch.nn.functional.cross_entropy
    assert loss(model(adv), y) > loss(model(x), y)
    f = noisy_fgsm(model, x, y, 0.1, 0.1, start)
    # seed 003: FGSM step of eps from the noisy point: up to 2 eps from x, each pixel moved by <= eps from x0
    x0 = (x + 0.1 * start).clamp(0, 1)
    assert (f - x0).abs().max() <= 0.1 + 1e-6 and (f - x).abs().max() <= 0.2 + 1e-6
    assert f.min() >= 0 and f.max() <= 1


def _weights(run_dir, name="last"):
    return load_file(str(weights_path(Path(run_dir) / f"{name}.json")))


def _state(run_dir):
    return read(Path(run_dir) / "last.json", state=True)[2]


class _Kill(Exception):
    pass


class KillAt(Hooks):
    def __init__(self, step):
        self.step, self.n = step, 0

    def after_step(self, model):
        self.n += 1
        if self.n == self.step:
            raise _Kill


@pytest.mark.parametrize("recipe", ["pgd", "noisy_fgsm"])
def test_resume_is_bit_identical(tmp_path, recipe):
    cfg = tiny(tmp_path, recipe=recipe, out_dir=str(tmp_path / "full"))
    fit(cfg)
    killed = cfg.replace(out_dir=str(tmp_path / "killed"))
    with pytest.raises(_Kill):
        fit(killed, KillAt(11))  # 8 steps per epoch: dies during epoch 2, after epoch 1's checkpoint
    assert json.loads((tmp_path / "killed" / "last.json").read_text())["epoch"] == 1
    fit(killed, resume=True)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = _state(tmp_path / "full"), _state(tmp_path / "killed")
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("optim."))
    ja, jb = (json.loads((tmp_path / d / "last.json").read_text()) for d in ("full", "killed"))
    assert ja["scheduler"] == jb["scheduler"] and ja["best"] == jb["best"]
    assert [h["train_loss"] for h in ja["history"]] == [h["train_loss"] for h in jb["history"]]


def test_resume_checks_config_and_can_extend_epochs(tmp_path):
    cfg = tiny(tmp_path, epochs=1, early_stop=False)
    fit(cfg)
    with pytest.raises(ValueError, match=r"config differs .*'lr'"):
        fit(cfg.replace(lr=0.2), resume=True)
    r = fit(cfg.replace(epochs=2), resume=True)
    assert [h["epoch"] for h in r["history"]] == [1, 2]
    with pytest.raises(FileNotFoundError, match="last.json"):
        fit(cfg.replace(out_dir=str(tmp_path / "none")), resume=True)


def test_load_checkpoint_rebuilds_model_and_rejects_other_architectures(tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    fit(cfg)
    files = sorted(re.sub(r"\.[0-9a-f]{12}\.", ".TAG.", p.name) for p in (tmp_path / "run").iterdir())
    assert files == [".fastnoise-train.lock", "best.TAG.safetensors", "best.TAG.state.safetensors", "best.json",
                     "last.TAG.safetensors", "last.TAG.state.safetensors", "last.json"]  # no pickles
    model, c = load_checkpoint(tmp_path / "run")
    assert c == cfg and not model.training
    x = fd.load("synthetic").test.tensors()[0][:16]
    model2, _ = load_checkpoint(weights_path(tmp_path / "run" / "best.json"))
    assert torch.equal(model(x), model2(x))
    # another architecture: every mismatch named
    wide = build_model(cfg.replace(model_options={"width": 16}), fd.load("synthetic"))
    from fastnoise.train.checkpoint import load_weights, read
    _, w, _ = read(tmp_path / "run")
    with pytest.raises(ValueError, match=r"shape mismatch: \['1.features.0.weight: checkpoint \(8, 1, 3, 3\) vs model \(16, 1, 3, 3\)"):
        load_weights(wide, w)
    mlp = build_model(cfg.replace(model="mlp"), fd.load("synthetic"))
    with pytest.raises(ValueError, match=r"missing in the checkpoint: \['1.net.1.bias'.*not in the model: \['1.classifier"):
        load_weights(mlp, w)
    # a resumed run whose model differs is refused the same way
    with pytest.raises(ValueError, match="does not fit this architecture"):
        train_model(wide, fd.load("synthetic"), cfg, resume=True)


def test_checkpoint_commit_is_atomic_and_old_files_are_removed(tmp_path, monkeypatch):
    import fastnoise.train.checkpoint as ck
    fit(tiny(tmp_path, epochs=1, early_stop=False))
    run = tmp_path / "run"
    before = sorted(p.name for p in run.iterdir())
    w1 = _weights(run)
    # a kill after the new safetensors files but before the JSON commit: the old checkpoint stays whole
    real = ck._atomic

    def die_at_json(path, write):
        if str(path).endswith(".json"):
            raise KeyboardInterrupt
        real(path, write)
    monkeypatch.setattr(ck, "_atomic", die_at_json)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(tmp_path, epochs=2, early_stop=False), resume=True)
    monkeypatch.setattr(ck, "_atomic", real)
    assert json.loads((run / "last.json").read_text())["epoch"] == 1
    assert all(torch.equal(w1[k], v) for k, v in _weights(run).items())
    r = fit(tiny(tmp_path, epochs=2, early_stop=False), resume=True)  # resumes from epoch 1
    assert [h["epoch"] for h in r["history"]] == [1, 2]
    after = sorted(p.name for p in run.iterdir())
    assert len(after) == 4 and not set(after) & set(before) - {"last.json", ".fastnoise-train.lock"}  # stale files deleted
    # files that do not belong together are refused
    meta = json.loads((run / "last.json").read_text())
    meta["token"] = "0" * 32
    (run / "last.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="token mismatch"):
        load_checkpoint(run)


class Recorder(Hooks):
    def __init__(self):
        self.calls = []

    def extra_loss(self, model, x, y, logits):
        self.calls.append("extra_loss")
        return 0.0 * logits.sum() + 1.0

    def after_step(self, model):
        self.calls.append("after_step")
        with torch.no_grad():  # a parameter constraint
            model[1].classifier[-1].weight.clamp_(-0.05, 0.05)

    def resample_noise(self, model):
        self.calls.append("resample_noise")

    def on_epoch_end(self, model, epoch, metrics):
        self.calls.append(("epoch", epoch, "val_robust" in metrics))
        metrics["custom"] = 1


def test_hooks_order_and_effect(tmp_path):
    h = Recorder()
    r = fit(tiny(tmp_path, epochs=1), h)
    assert h.calls[:3] == ["resample_noise", "extra_loss", "after_step"]
    assert h.calls.count("after_step") == 8 and h.calls[-1] == ("epoch", 1, True)
    assert r["history"][0]["custom"] == 1 and r["history"][0]["train_loss"] > 1.0  # extra loss of 1 included
    model, _ = load_checkpoint(tmp_path / "run" / "last.json")
    assert model[1].classifier[-1].weight.abs().max() <= 0.05


class NoisyIdentity(NoiseModule):
    """A minimal randomized layer: x + 0.01 * N(0,1) from its own Philox stream."""

    def __init__(self, seed):
        super().__init__()
        self.stream = PhiloxStream(seed)
        self.seen = []

    def forward(self, x):
        self.seen.append(self.noise_active)
        if not self.noise_active:
            return x
        s, o = self.stream.next(x.numel()).tolist()
        return x + 0.01 * fastnoise.rng.normal(x.numel(), s, o).view_as(x)


def test_noise_modules_attack_with_noise_and_streams_are_saved(tmp_path):
    cfg = tiny(tmp_path, epochs=1, early_stop=False)
    splits = fd.load("synthetic")
    model = build_model(cfg, splits)
    layer = NoisyIdentity(seed=5).set_noise_mode("train")
    model.insert(1, layer)
    with attack_mode(model):
        assert not model.training and layer.noise_active
    assert layer.noise_mode == "train"
    train_model(model, splits, cfg)
    assert all(layer.seen)  # noise on in attack generation (eval mode) and in the update
    w = _weights(tmp_path / "run")
    assert w["1.stream.state"][0] == 5 and w["1.stream.state"][1] > 0
    assert json.loads((tmp_path / "run" / "last.json").read_text())["noise_modes"] == {"1": "train"}


@pytest.mark.parametrize("kw,match", [
    ({"epochz": 3}, r"unknown config key\(s\) \['epochz'\]; valid keys: \['dataset', 'data_root'"),
    ({"dataset": "imagenet"}, r"dataset must be one of \['digits', 'mnist'"),
    ({"model": "resnet50"}, r"model must be one of \['small_cnn'"),
    ({"method": "magic"}, r"method must be one of \['none'"),
    ({"recipe": "trades"}, r"recipe must be one of \['standard', 'pgd', 'noisy_fgsm'\]"),
    ({"eps": -0.1}, r"eps must be a finite number >= 0"),
    ({"lr": float("nan")}, r"lr must be a finite number > 0"),
    ({"epochs": 0}, r"epochs must be an int >= 1"),
    ({"milestones": [5, 2]}, r"milestones must be an ascending list"),
    ({"device": "tpu"}, r"device must be 'auto', 'cpu'"),
])
def test_bad_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(kw)


def test_distributed_needs_torchrun_and_torchrun_needs_distributed(tmp_path, monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        fit(tiny(tmp_path, distributed=True))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="pass --distributed"):
        fit(tiny(tmp_path))


def test_cli_train_config_flags_resume_and_errors(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset": "synthetic", "model": "mlp", "model_options": {"width": 16}, "epochs": 2,
                               "batch_size": 128, "quiet": True, "test_eval": False, "early_stop": False}))
    out = str(tmp_path / "cli")
    assert cli_main(["train", "--config", str(cfg), "--epochs", "1", "--out-dir", out]) == 0
    assert json.loads((Path(out) / "last.json").read_text())["config"]["epochs"] == 1
    assert cli_main(["train", "--config", str(cfg), "--out-dir", out, "--resume"]) == 0
    meta = json.loads((Path(out) / "last.json").read_text())
    assert meta["epoch"] == 2 and meta["config"]["model_options"] == {"width": 16}
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dataset": "synthetic", "learning_rate": 0.1}))
    assert cli_main(["train", "--config", str(bad)]) == 2
    assert "unknown config key(s) ['learning_rate']; valid keys" in capsys.readouterr().err
    for flags, msg in ((["--dataset", "svhn"], "dataset must be one of"), (["--model", "x"], "model must be one of"),
                       (["--method", "x"], "method must be one of ['none'"), (["--recipe", "x"], "recipe must be one of"),
                       (["--eps", "-1"], "eps must be a finite number >= 0")):
        assert cli_main(["train"] + flags) == 2
        assert msg in capsys.readouterr().err
    assert cli_main(["train", "--config", str(cfg), "--milestones", "1", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["milestones"] == [1]


def test_cifar_format_run_with_augmentation_and_reload(tmp_path):
    from test_data import _cifar_folder
    _cifar_folder(tmp_path / "data", "cifar10")
    seen = []

    class Spy(Hooks):
        def extra_loss(self, model, x, y, logits):
            seen.append(x.detach().clone())

    cfg = TrainConfig(dataset="cifar10", data_root=str(tmp_path / "data"), model="resnet20", epochs=1, batch_size=16,
                      steps=1, val_samples=5, quiet=True, out_dir=str(tmp_path / "run"))
    r = fit(cfg, Spy())
    assert 0 <= r["test_clean"] <= 1 and r["test_attack"].startswith("PGD-1 eps=0.03137 alpha=0.07843")
    assert len(seen) == 3 and seen[0].shape == (16, 3, 32, 32)
    # augmented adversarial batches: crops bring in zero padding, values stay in [0, 1]
    assert float(torch.cat(seen).min()) >= 0 and float(torch.cat(seen).max()) <= 1
    model, c = load_checkpoint(tmp_path / "run")
    assert c.dataset == "cifar10" and torch.allclose(model[0].mean.flatten(), torch.tensor([0.4914, 0.4822, 0.4465]))


def test_resume_with_a_noise_layer_is_bit_identical(tmp_path):
    splits = fd.load("synthetic")

    def noisy_model(cfg):
        m = build_model(cfg, splits)
        m.insert(1, NoisyIdentity(seed=7))  # noise on: attack and update both draw from its stream
        return m

    cfg = tiny(tmp_path, out_dir=str(tmp_path / "full"))
    train_model(noisy_model(cfg), splits, cfg)
    killed = cfg.replace(out_dir=str(tmp_path / "killed"))
    with pytest.raises(_Kill):
        train_model(noisy_model(killed), splits, killed, KillAt(12))
    train_model(noisy_model(killed), splits, killed, resume=True)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "killed")
    assert a["1.stream.state"][1] > 0 and all(torch.equal(a[k], b[k]) for k in a)
