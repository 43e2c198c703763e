"""`fastnoise train` and its output folder (fastnoise/train/rundir.py): an exclusive lock (a second run into
the same folder fails at once), no overwrite of a finished or running run without --resume / --overwrite,
the folder checked writable before training, leftovers of a killed run removed at the next start, and
damaged or foreign checkpoint files named in the error."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fastnoise
from fastnoise.cli import main
from fastnoise.train import RunDirError, TrainConfig, fit, load_checkpoint
from fastnoise.train import rundir


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(out, **kw):
    base = dict(dataset="synthetic", model="mlp", model_options={"width": 16}, epochs=1, batch_size=128, quiet=True,
                test_eval=False, early_stop=False, out_dir=str(out), device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(fastnoise.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


_GATED_RUN = """
import sys, time
from pathlib import Path
from fastnoise.train import Hooks, TrainConfig, fit

class Gate(Hooks):
    # holds the run (and its lock) after epoch 1 until the test creates the gate file
    def on_epoch_end(self, model, epoch, metrics):
        t0 = time.monotonic()
        while epoch == 1 and not Path(sys.argv[2]).exists() and time.monotonic() - t0 < 300:
            time.sleep(0.02)

fit(TrainConfig(dataset="synthetic", model="small_cnn", model_options={"width": 4, "hidden": 16}, epochs=3,
                quiet=True, test_eval=False, early_stop=False, device="cpu", out_dir=sys.argv[1]), hooks=Gate())
"""


def test_two_concurrent_runs_into_one_folder(tmp_path):
    """The issue's case: both runs used to exit 0 and the first one's checkpoint was gone. The first run is
    held after its first epoch by a hook until the checks are done, so the race cannot end it early."""
    out, gate = tmp_path / "run", tmp_path / "gate"
    first = subprocess.Popen([sys.executable, "-c", _GATED_RUN, str(out), str(gate)], env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    argv = [sys.executable, "-m", "fastnoise", "train", "--dataset", "synthetic", "--model", "small_cnn",
            "--model-options", '{"width": 4, "hidden": 16}', "--epochs", "3", "--quiet", "true", "--test-eval",
            "false", "--early-stop", "false", "--device", "cpu", "--out-dir", str(out)]
    try:
        lock = out / rundir.LOCK_NAME
        t0 = time.monotonic()
        while not (lock.is_file() and f"pid {first.pid} " in lock.read_text()) and time.monotonic() - t0 < 300:
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.02)
        second = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert f"is in use by another fastnoise train run (pid {first.pid} on" in second.stderr, second.stderr
        # the same for the Python API, in this process (another open file description: flock conflicts)
        with pytest.raises(RunDirError, match="in use by another fastnoise train run"):
            fit(tiny(out))
        assert first.poll() is None  # the checks ran while the first run held the folder
    finally:
        gate.touch()
        assert first.wait(timeout=600) == 0, first.stderr.read()
    assert json.loads((out / "last.json").read_text())["epoch"] == 3  # the first run's checkpoint is whole
    load_checkpoint(out)


def test_existing_run_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    fit(tiny(out))
    before = json.loads((out / "last.json").read_text())["token"]
    with pytest.raises(RunDirError, match=r"already holds a run \(last.json, epoch 1 of 1\); pass --resume"):
        fit(tiny(out))
    assert json.loads((out / "last.json").read_text())["token"] == before  # untouched
    with pytest.raises(ValueError, match="either resume .* or overwrite"):
        fit(tiny(out), resume=True, overwrite=True)
    argv = ["train", "--dataset", "synthetic", "--model", "mlp", "--model-options", '{"width": 16}', "--epochs", "1",
            "--quiet", "true", "--test-eval", "false", "--early-stop", "false", "--out-dir", str(out)]
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    old_files = {p.name for p in out.glob("last.*.safetensors")}
    assert main(argv + ["--overwrite", "--epochs", "2"]) == 0
    meta = json.loads((out / "last.json").read_text())
    assert meta["token"] != before and meta["epoch"] == 2 and [h["epoch"] for h in meta["history"]] == [1, 2]
    assert (out / "notes.txt").read_text() == "mine"  # only checkpoint files are replaced
    assert not old_files & {p.name for p in out.iterdir()}
    assert main(argv + ["--resume", "--epochs", "3"]) == 0
    assert json.loads((out / "last.json").read_text())["epoch"] == 3


def test_overwrite_deletes_the_old_checkpoints_first(tmp_path):
    """An overwriting run killed before its first checkpoint must not leave the old run to be resumed."""
    out = tmp_path / "run"
    fit(tiny(out, early_stop=True))
    assert (out / "best.json").is_file()

    class Die(fastnoise.train.Hooks):
        def after_step(self, model):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(tiny(out, lr=0.2), Die(), overwrite=True)
    assert rundir.existing_run(out) is None and not list(out.glob("*.safetensors"))
    with pytest.raises(FileNotFoundError, match="last.json"):
        fit(tiny(out, lr=0.2), resume=True)


def test_unwritable_folder_fails_before_training(tmp_path, capsys):
    """It used to be found only when the first checkpoint was written, after an epoch of training."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    started = []

    class Spy(fastnoise.train.Hooks):
        def after_step(self, model):
            started.append(1)

    with pytest.raises(RunDirError, match=f"out_dir {blocker / 'run'} cannot be created"):
        fit(tiny(blocker / "run"), Spy())
    assert not started
    assert main(["train", "--dataset", "synthetic", "--model", "mlp", "--out-dir", str(blocker)]) == 2
    assert f"out_dir {blocker} is not a folder" in capsys.readouterr().err


def test_unwritable_folder_probe(tmp_path, monkeypatch):
    """The write probe itself (a read-only folder; root ignores permission bits, so the failure is injected)."""
    real = Path.write_bytes

    def denied(self, data):
        if self.name.startswith(".write-test."):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", denied)
    with pytest.raises(RunDirError, match=r"is not writable \(PermissionError"):
        fit(tiny(tmp_path / "run"))


def test_leftovers_of_a_killed_run_are_removed_at_the_next_start(tmp_path):
    out = tmp_path / "run"
    fit(tiny(out))
    meta = json.loads((out / "last.json").read_text())
    junk = [".last.json.tmp123", ".last.abcdef012345.safetensors.tmp77", "last.abcdef012345.safetensors",
            "last.abcdef012345.state.safetensors", "best.0000aaaa1111.safetensors"]
    for name in junk:
        (out / name).write_bytes(b"partial")
    (out / "mine.safetensors").write_bytes(b"user file")
    fit(tiny(out, epochs=2), resume=True)
    names = {p.name for p in out.iterdir()}
    assert not names & set(junk) and "mine.safetensors" in names
    assert json.loads((out / "last.json").read_text())["epoch"] == 2 and meta["epoch"] == 1
    assert rundir.remove_leftovers(out) == []


def test_damaged_and_foreign_checkpoint_files_are_named(tmp_path):
    out = tmp_path / "run"
    fit(tiny(out))
    j = out / "last.json"
    meta = json.loads(j.read_text())
    weights = out / meta["files"]["weights"]
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated tensors
    with pytest.raises(ValueError, match=f"checkpoint file {weights} is"):
        load_checkpoint(out)
    weights.write_bytes(data)
    text = j.read_text()
    j.write_text(text[: len(text) // 2])  # truncated JSON
    with pytest.raises(ValueError, match=f"{j}: not a readable fastnoise checkpoint JSON"):
        load_checkpoint(out)
    j.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match=f"{j}: not a fastnoise checkpoint"):
        load_checkpoint(out)
    j.write_text(json.dumps({k: v for k, v in meta.items() if k != "token"}))
    with pytest.raises(ValueError, match=rf"{j}: a damaged fastnoise checkpoint .*'token'"):
        load_checkpoint(out)
    foreign = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match=f"{foreign}: not a fastnoise checkpoint"):
        load_checkpoint(foreign)


def test_eval_cli_names_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("{")
    assert main(["eval", "--checkpoint", str(bad)]) == 2
    assert f"{bad}: not a readable fastnoise checkpoint JSON" in capsys.readouterr().err
