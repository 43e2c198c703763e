"""`--distributed` with BatchNorm models: 2 gloo ranks x B/2 train the weights of 1 process with batch B
(the BatchNorm moments are all-reduced: fastnoise.train.syncbn), with running statistics equal on every
rank, also when the epoch's last batch is uneven across the ranks and with augmentation."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

import fastnoise
from fastnoise.train import TrainConfig, fit
from fastnoise.train.checkpoint import weights_path
from fastnoise.train.syncbn import GlooSyncBatchNorm, sync_batchnorm

# recipe "standard": with an attack in the loop, the runs agree to ~1e-7 until a PGD sign step meets a
# gradient component that is ~0 (batch 64 and batch 32 GEMMs round differently and sign(+-1e-12) differs), and
# then diverge chaotically (measured: 7e-8 for 11 steps, then 8e-3 after one epoch). That is the attack's
# sign, not the BatchNorm statistics, which this test is about (docs/design-notes.md, distributed BatchNorm note).
DIGITS = {"dataset": "digits", "model": "small_cnn", "model_options": {"width": 8, "hidden": 32},
          "recipe": "standard", "epochs": 1, "batch_size": 64, "lr": 0.05, "quiet": True, "test_eval": False,
          "early_stop": False, "device": "cpu"}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(fastnoise.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _close(a: dict, b: dict, atol: float = 2e-5) -> float:
    """Max |a - b| over every tensor; asserts float tolerance."""
    assert a.keys() == b.keys()
    worst = 0.0
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=atol, msg=lambda m: f"{k}: {m}")
            worst = max(worst, float((a[k] - b[k]).abs().max()) if a[k].numel() else 0.0)
        else:
            assert torch.equal(a[k], b[k]), k
    return worst


def test_small_cnn_on_digits_two_gloo_ranks_match_one_process(tmp_path):
    """The issue's measurement (weights up to 0.66 apart) as a test, at CI size. digits' train split has 1295
    images: the last global batch (15) is uneven over the ranks (8 + 7), nothing padded."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(DIGITS))
    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "fastnoise", "train", "--config", str(cfg), "--out-dir", str(ddp), "--distributed"]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    torch.set_num_threads(1)
    fit(TrainConfig(**DIGITS, out_dir=str(tmp_path / "single")))
    a, b = (load_file(str(weights_path(d / "last.json"))) for d in (ddp, tmp_path / "single"))
    assert any(k.endswith("running_var") for k in a)
    _close(a, b)
    h2, h1 = (json.loads((d / "last.json").read_text())["history"] for d in (ddp, tmp_path / "single"))
    assert h2[0]["train_loss"] == pytest.approx(h1[0]["train_loss"], rel=1e-5)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cifar_cfg(root, out, distributed):
    return TrainConfig(dataset="cifar10", data_root=str(root), model="resnet20", recipe="standard", epochs=2,
                       batch_size=16, lr=0.05, quiet=True, test_eval=False, early_stop=False, device="cpu",
                       out_dir=str(out), distributed=distributed)


def _resnet64():
    """ResNet-20 in float64 and a fixed batch of 10 CIFAR-shaped images (5 + 5 over 2 ranks)."""
    from fastnoise.models import build
    torch.manual_seed(0)
    model = build("resnet20", 10, 3, 32).double().train()
    g = torch.Generator().manual_seed(1)
    return model, torch.rand(10, 3, 32, 32, generator=g, dtype=torch.float64), torch.randint(0, 10, (10,), generator=g)


def _resnet_worker(rank, world, port, root, out_dir, result_dir):
    import torch.distributed as dist
    from fastnoise.train import train_model
    from fastnoise.train.loop import build_model
    import fastnoise.data as fd
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    dist.init_process_group("gloo")
    try:
        # one float64 step: this rank's rows of a fixed batch, loss sum * N / B, gradients averaged (what DDP does)
        model, x, y = _resnet64()
        model = sync_batchnorm(model, torch.device("cpu"))
        loss = torch.nn.functional.cross_entropy(model(x[rank::world]), y[rank::world], reduction="sum") * world / len(y)
        loss.backward()
        out = {}
        for k, p in model.named_parameters():
            dist.all_reduce(p.grad)
            out["grad." + k] = p.grad / world
        out.update({k: v.clone() for k, v in model.state_dict().items()})
        torch.save(out, Path(result_dir) / f"step{rank}.pt")
        cfg = _cifar_cfg(root, out_dir, True)
        splits = fd.load("cifar10", root)
        model = build_model(cfg, splits)
        train_model(model, splits, cfg)
        assert any(isinstance(m, GlooSyncBatchNorm) for m in model.modules())
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, Path(result_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_resnet_on_cifar_shaped_data_two_ranks_match_one_process(tmp_path):
    """ResNet-20 on CIFAR-format data (45 train images, batch 16: the last batch is 13 = 7 + 6), random
    crop + flip augmentation (drawn for the global batch), 2 epochs; every rank's state is compared."""
    from test_data import _cifar_folder
    _cifar_folder(tmp_path / "data", "cifar10")
    mp.spawn(_resnet_worker, args=(2, _free_port(), str(tmp_path / "data"), str(tmp_path / "ddp"), str(tmp_path)),
             nprocs=2, join=True)
    torch.set_num_threads(1)
    # float64, one step: the gradients and running statistics of 2 ranks are those of 1 process, to rounding
    model, x, y = _resnet64()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    ref = {"grad." + k: p.grad for k, p in model.named_parameters()}
    ref.update(model.state_dict())
    for r in (0, 1):
        got = torch.load(tmp_path / f"step{r}.pt")
        assert got.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-9, atol=1e-12, msg=lambda m: f"rank {r} {k}: {m}")
    fit(_cifar_cfg(tmp_path / "data", tmp_path / "single", False))
    one = load_file(str(weights_path(tmp_path / "single" / "last.json")))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for k in one:  # running statistics (and weights) are the same on every rank: bit for bit
        assert torch.equal(ranks[0][k], ranks[1][k]), k
    # float32 training: rounding (B vs B/2 GEMMs, float64 moments vs torch's BatchNorm) compounds over 19
    # BatchNorm layers and 6 SGD steps on random images. How far rounding alone moves this training is
    # measured in the same run: the single process again with 2 threads instead of 1 (the float64 step
    # above is exact to 1e-9). Measured: Zen 1 (AVX2) ranks vs one process up to 1.1e-4; Zen 5 (AVX-512)
    # 7.7e-3 with the thread control at 2.6e-3, and (2026-12-02, fourth session) 7.6e-3 with the control at
    # only 9.3e-4, so 5x the control alone is not a bound: the floor is 2e-2, still 33x below the
    # unsynchronized BatchNorm's error of up to 0.66 (the digits test's issue measurement).
    torch.set_num_threads(2)
    try:
        fit(_cifar_cfg(tmp_path / "data", tmp_path / "single2", False))
    finally:
        torch.set_num_threads(1)
    two = load_file(str(weights_path(tmp_path / "single2" / "last.json")))
    floor = max(float((one[k] - two[k]).abs().max()) for k in one if one[k].is_floating_point())
    _close({k: ranks[0][k] for k in one}, one, atol=max(2e-2, 5 * floor))
    assert int(one["1.bn1.num_batches_tracked"]) == 6  # 3 steps per epoch, nothing padded or dropped


def test_gloo_sync_batchnorm_is_batchnorm_in_one_process():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(4, momentum=None)
    ref = torch.nn.BatchNorm2d(4, momentum=None)
    ref.load_state_dict(bn.state_dict())
    model = sync_batchnorm(torch.nn.Sequential(bn), torch.device("cpu"))
    sb = model[0]
    assert isinstance(sb, GlooSyncBatchNorm) and sb.weight is bn.weight and sb.running_mean is bn.running_mean
    x = torch.randn(6, 4, 3, 3)
    torch.testing.assert_close(model(x), ref(x))
    model.eval()
    ref.eval()
    torch.testing.assert_close(model(x), ref(x))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "0.running_mean", "0.running_var",
                                        "0.num_batches_tracked"]
