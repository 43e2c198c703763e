"""NENNI (layers with extra state) through `fastnoise train`: trains, checkpoints (configurations as JSON,
no pickle), is killed with SIGKILL mid-run, resumes bit for bit; leftovers of the killed run are removed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import fastnoise
from fastnoise.train import load_checkpoint
from fastnoise.train.checkpoint import read, weights_path

ARGS = ["--dataset", "synthetic", "--model", "small_cnn", "--model-options", '{"width": 4, "hidden": 16}',
        "--method", "nenni", "--method-options", '{"ratio": 0.75, "k": 8}', "--epochs", "3", "--batch-size", "64",
        "--lr", "0.05", "--quiet", "true", "--test-eval", "false", "--device", "cpu"]


def _env():
    env = dict(os.environ)
    root = str(Path(fastnoise.__file__).resolve().parent.parent)  # the fastnoise this test imports
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _train(*extra):
    return [sys.executable, "-m", "fastnoise", "train", *ARGS, *extra]


def _epoch(run: Path):
    try:
        return json.loads((run / "last.json").read_text())["epoch"]
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def test_nenni_trains_is_killed_and_resumes_bit_for_bit(tmp_path, capsys):
    full, killed = tmp_path / "full", tmp_path / "killed"
    p = subprocess.run(_train("--out-dir", str(full)), env=_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    proc = subprocess.Popen(_train("--out-dir", str(killed)), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        while _epoch(killed) < 1 and proc.poll() is None and time.monotonic() - t0 < 300:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # mid-run: during epoch 2 (an epoch takes ~1 s here)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _epoch(killed)
    assert 1 <= done < 3, done
    # what a kill inside a checkpoint write leaves: a temporary file, tensors no JSON refers to
    (killed / ".last.json.tmp4242").write_text("{")
    orphan = killed / "last.0123456789ab.safetensors"
    orphan.write_bytes(b"x")
    # the killed run is not overwritten by accident
    from fastnoise.cli import main
    assert main(_train("--out-dir", str(killed))[3:]) == 2
    assert f"already holds a run (last.json, epoch {done} of 3)" in capsys.readouterr().err
    p = subprocess.run(_train("--out-dir", str(killed), "--resume"), env=_env(), capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert not (killed / ".last.json.tmp4242").exists() and not orphan.exists()
    meta_a, wa, sa = read(full / "last.json", state=True)
    meta_b, wb, sb = read(killed / "last.json", state=True)
    assert meta_b["epoch"] == 3
    assert wa.keys() == wb.keys() and any(k.endswith("_extra_state") for k in wa)
    for k in wa:
        if isinstance(wa[k], torch.Tensor):
            assert torch.equal(wa[k], wb[k]), k
        else:
            assert wa[k] == wb[k], k
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("optim."))
    assert [h["train_loss"] for h in meta_a["history"]] == [h["train_loss"] for h in meta_b["history"]]
    # the NENNI configuration is JSON in the checkpoint and is restored with the model
    extra = meta_b["extra_state"]
    assert extra and all(v["config"]["method"] == "nenni" and v["config"]["ratio"] == 0.75 for v in extra.values())
    assert set(load_file(str(weights_path(killed)))) == {k for k in wb if not k.endswith("_extra_state")}
    model, cfg = load_checkpoint(killed)
    layers = fastnoise.nenni.nenni_layers(model)
    assert cfg.method == "nenni" and layers and all(m.ratio == 0.75 and m.k == 8 for _, m in layers)


def test_eps_zero_trains_and_reports(tmp_path, capsys):
    """--eps 0 used to die after the first epoch (val_robust None in the log line)."""
    from fastnoise.cli import main
    rc = main(["train", "--dataset", "synthetic", "--model", "mlp", "--model-options", '{"width": 16}', "--epochs", "2",
               "--eps", "0", "--out-dir", str(tmp_path / "run"), "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert summary["test_robust"] == summary["test_clean"]  # eps 0: the robust accuracy is the clean one
    hist = json.loads((tmp_path / "run" / "last.json").read_text())["history"]
    assert all(h["val_robust"] == h["val_clean"] for h in hist) and summary["best_epoch"] in (1, 2)
