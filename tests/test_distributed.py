"""Distributed training on CPU: 2 gloo processes launched by torchrun give the final weights of one
process with the same global batch; per-rank noise streams are distinct (seed + rank) and
reproducible; only rank 0 writes checkpoints."""
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

CFG = {"dataset": "synthetic", "model": "mlp", "model_options": {"width": 32}, "recipe": "pgd", "epochs": 2,
       "batch_size": 64, "lr": 0.05, "quiet": True, "test_eval": False, "device": "cpu"}


def _env():
    env = dict(os.environ)
    root = str(Path(fastnoise.__file__).resolve().parent.parent)  # the fastnoise this test imports
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_two_gloo_ranks_match_one_process(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(CFG))
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "fastnoise", "train", "--config", str(cfg), "--out-dir", str(ddp_dir), "--distributed"]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    meta = json.loads((ddp_dir / "last.json").read_text())
    assert meta["world_size"] == 2 and meta["epoch"] == 2
    torch.set_num_threads(1)
    fit(TrainConfig(**CFG, out_dir=str(single_dir)))
    a, b = (load_file(str(weights_path(d / "last.json"))) for d in (ddp_dir, single_dir))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: {m}")
    assert any(not torch.equal(a[k], fastnoise.models.build("mlp", 4, 1, 8, width=32).state_dict()[k]) for k in a)
    # logged metrics cover both shards: the same as one process
    h1 = json.loads((single_dir / "last.json").read_text())["history"]
    # (discrete accuracies may flip a sample or two: the weights agree to float tolerance, not bits)
    assert [h["train_loss"] for h in meta["history"]] == pytest.approx([h["train_loss"] for h in h1], rel=1e-4)
    assert [h["train_acc"] for h in meta["history"]] == pytest.approx([h["train_acc"] for h in h1], abs=0.01)
    # nothing but rank 0's files (3 per checkpoint, and the run folder's lock file)
    assert len(list(ddp_dir.iterdir())) == len(list(single_dir.iterdir())) == 7


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir, result_dir):
    import torch.distributed as dist
    from fastnoise.rng import PhiloxStream
    from fastnoise.train import train_model
    from fastnoise.train.loop import build_model
    import fastnoise.data as fd
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    dist.init_process_group("gloo")
    try:
        cfg = TrainConfig(**{**CFG, "epochs": 1, "early_stop": False}, out_dir=out_dir, distributed=True)
        splits = fd.load("synthetic")
        model = build_model(cfg, splits)
        model[1].add_module("stream", PhiloxStream(seed=1000))  # a noise stream (MLP.forward does not use it)
        train_model(model, splits, cfg)
        Path(result_dir, f"rank{rank}.json").write_text(json.dumps(model[1].stream.state.tolist()))
    finally:
        dist.destroy_process_group()


def test_per_rank_noise_streams_and_rank0_checkpoint(tmp_path):
    out = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(out), str(tmp_path)), nprocs=2, join=True)
    seeds = [json.loads((tmp_path / f"rank{r}.json").read_text())[0] for r in (0, 1)]
    assert seeds == [1000, 1001]  # distinct and reproducible: seed + rank
    saved = load_file(str(weights_path(out / "last.json")))["1.stream.state"]
    assert saved.tolist() == [1000, 0]  # rank 0's stream is what the checkpoint holds
