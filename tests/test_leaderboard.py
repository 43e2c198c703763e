"""`fastnoise leaderboard` (fastnoise/leaderboard/): registry-driven rows, resume after a kill, 2 gloo ranks =
1 process, the table / JSON schema, consistency flags, bad input. Tiny budget on the synthetic data set (the
real quick budget is `make demo`, measured in docs/robustness.md)."""
import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fastnoise
from fastnoise import leaderboard as lb
from fastnoise import methods
from fastnoise.cli import main
from fastnoise.leaderboard import _report
from fastnoise.methods import Evaluation, Method, Option, TrainingRecipe, number
from fastnoise.nn import GaussianNoise

TINY = {"name": "tiny", "description": "test budget", "model": "mlp", "model_options": {"width": 16}, "epochs": 2,
        "batch_size": 64, "lr": 0.05, "early_stop": False, "val_samples": 16, "train_steps": 2, "eval_samples": 24,
        "expensive_samples": 8, "eot": 2, "draws": 2, "pgd_steps": 3, "aa_iterations": 2, "square_queries": 10,
        "eot_curve": [1, 2], "inference_batch": 32}


class ToyNoise(Method):
    """A trivial randomized defense: Gaussian noise on the input (the whole model wrapped)."""
    name = "toy_noise"
    description = "toy: Gaussian noise on the input"
    looks_for = "any module (the root is wrapped)"
    options = (Option("sigma", 0.05, "noise std", number(lo=0.0)),)
    training = TrainingRecipe(recipe="pgd")
    evaluation = Evaluation(stochastic=True, draw="per_sample", seed_protocol="toy: one draw per step")
    example_options = {"sigma": 0.05}

    def targets(self, model, named, opts):
        return [""]

    def replace(self, name, module, index, opts):
        return torch.nn.Sequential(GaussianNoise(opts["sigma"], seed=11), module)


class Broken(ToyNoise):
    """A method whose conversion fails: its row is listed as failed, the others still run."""
    name = "toy_broken"
    description = "toy: conversion raises"

    def replace(self, name, module, index, opts):
        raise ValueError("toy_broken cannot convert anything")


class ToyArch(ToyNoise):
    """A method that declares its own architecture (`TrainingRecipe.model`): its row trains that network,
    not the budget's mlp, and says so."""
    name = "toy_arch"
    description = "toy: its own architecture"
    training = TrainingRecipe(recipe="pgd", model="small_cnn", model_options={"width": 2, "hidden": 8, "bn": False})


def _env():
    env = dict(os.environ)
    root = str(Path(fastnoise.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cmd(budget_file, out, *extra):
    return ["-m", "fastnoise", "leaderboard", "--dataset", "synthetic", "--methods", "none", "--budget",
            str(budget_file), "--out", str(out), "--no-progress", *extra]


def _numbers(board):
    """Every accuracy number of the rows (no timings, dates, paths)."""
    return {r["entry"]: {k: r[k] for k in ("accuracy", "gap_seed_minus_adaptive", "eps_curve", "eot_curve", "sanity",
                                           "n", "forwards_per_sample", "flags")} for r in board["rows"]}


@pytest.fixture(scope="module")
def budget_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("budget") / "tiny.json"
    f.write_text(json.dumps(TINY))
    return f


@pytest.fixture(scope="module")
def board(tmp_path_factory, budget_file):
    out = tmp_path_factory.mktemp("lb") / "board"
    methods.register(ToyNoise())
    methods.register(Broken())
    methods.register(ToyArch())
    try:
        threads = torch.get_num_threads()
        b = lb.run("synthetic", "toy_noise,toy_broken,toy_arch", str(budget_file), 1, out, progress=False,
                   log=lambda s: None)
        assert torch.get_num_threads() == threads  # the run restores the caller's thread count
    finally:
        methods.unregister("toy_noise")
        methods.unregister("toy_broken")
        methods.unregister("toy_arch")
    return b, out


def test_registered_method_appears_with_the_baselines(board):
    b, out = board
    assert [e.key for e in lb.select_entries("all")] == ["standard", "none"] + methods.names()
    keys = [r["entry"] for r in b["rows"]]
    assert sorted(keys) == ["none", "standard", "toy_arch", "toy_noise"]
    toy = next(r for r in b["rows"] if r["entry"] == "toy_noise")
    assert toy["stochastic"] and toy["eot_curve"] and toy["seed_protocol"]["kind"].startswith("one draw")
    assert toy["forwards_per_sample"]["pgd20"] == 2 * 3  # EOT-2 x 3 steps
    assert [(f["entry"], f["stage"]) for f in b["failed"]] == [("toy_broken", "training")]
    assert "toy_broken cannot convert anything" in b["failed"][0]["error"]
    assert "training failed (seed 0): ValueError" in (out / "leaderboard.md").read_text()
    std = next(r for r in b["rows"] if r["entry"] == "standard")
    assert std["recipe"] == "standard" and not std["stochastic"] and std["eot_curve"] is None


def test_a_method_declaring_its_architecture_trains_it_and_says_so(board):
    b, out = board
    arch = {r["entry"]: r["architecture"] for r in b["rows"]}
    assert arch["toy_arch"] == {"name": "small_cnn", "options": {"width": 2, "hidden": 8, "bn": False},
                                "source": "method"}
    for k in ("standard", "none", "toy_noise"):  # everyone else: the budget's architecture
        assert arch[k] == {"name": "mlp", "options": {"width": 16}, "source": "budget"}, k
    r = json.loads((out / "results" / "toy_arch-seed0.json").read_text())
    spec = json.loads(Path(r["train"]["checkpoint"]).read_text())["model_spec"]  # what was trained and evaluated
    assert spec["name"] == "small_cnn" and spec["options"] == {"width": 2, "hidden": 8, "bn": False}
    md = (out / "leaderboard.md").read_text()
    assert "| small_cnn (*method's*) |" in md and md.count("| mlp |") == 3
    assert "except toy_arch: small_cnn {width: 2, hidden: 8, bn: False}" in md and "a different network" in md


def test_schema_table_and_plots(board):
    b, out = board
    on_disk = json.loads((out / "leaderboard.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(b["rows"]))
    assert b["schema"] == 1 and b["dataset"] == "synthetic" and b["budget"]["name"] == "tiny"
    assert len(b["eps_curve"]) >= 4 and b["eps"] in b["eps_curve"]
    worst = [r["accuracy"]["worst_case"]["mean"] for r in b["rows"]]
    assert worst == sorted(worst, reverse=True)
    for r in b["rows"]:
        a = r["accuracy"]
        for k in ("clean", "fgsm", "pgd20", "autoattack_rand", "square", "worst_case", "seed_protocol"):
            assert 0.0 <= a[k]["mean"] <= 1.0, (r["entry"], k)
        same = [k for k in ("fgsm", "pgd20", "autoattack_rand", "square") if r["n"][k] == r["n"]["worst_case"]]
        assert same and r["n"]["worst_case"] == TINY["expensive_samples"]
        assert a["worst_case"]["mean"] <= min(a[k]["mean"] for k in same) + 1e-9
        assert r["gap_seed_minus_adaptive"]["mean"] == pytest.approx(a["seed_protocol"]["mean"] - a["worst_case"]["mean"])
        assert [p["eps"] for p in r["eps_curve"]] == b["eps_curve"]
        assert r["cost"]["inference_ms_per_batch"]["mean"] > 0 and r["cost"]["train_time_s"]["mean"] > 0
        assert r["cost"]["bitops_per_sample"] > 0
    md = (out / "leaderboard.md").read_text()
    assert md.count("| **") >= 3 and "seed − adaptive" in md and "worst case" in md
    for r in b["rows"]:
        assert f"**{r['label']}**" in md
    assert {"robust_vs_clean", "seed_vs_adaptive", "accuracy_vs_eps", "accuracy_vs_eot", "robust_vs_cost"} <= set(b["paths"])
    for k, p in b["paths"].items():
        assert Path(p).is_file() and Path(p).stat().st_size > 0, k
    assert len(lb.summary(b).splitlines()) == 2


def test_consistency_flags():
    row = lambda a, acc, n=100, eps=0.1: {"attack": a, "eps": eps, "n": n,  # noqa: E731
                                          "accuracy": {"mean": acc, "std": 0.0}}
    r = {"main": {"rows": [row("fgsm", 0.30), row("pgd20", 0.50), row("autoattack_rand", 0.45), row("square", 0.6)],
                  "sanity": {"passed": False, "eps": 1.0, "accuracy": {"mean": 0.4}, "threshold": 0.05}},
         "curve": {"rows": [row("pgd20", 0.60, eps=0.05), row("pgd20", 0.70, eps=0.2)],
                   "errors": [{"attack": "pgd20", "error": "RuntimeError: boom"}]},
         "seed_protocol": {"result": None}}
    flags = _report._flags(r)
    assert any(f.startswith("fgsm < pgd20") for f in flags)
    assert not any(f.startswith("pgd20 < autoattack_rand") for f in flags)  # stronger attack lower: fine
    assert not any(f.startswith("square") for f in flags)
    assert [f for f in flags if "rises with eps" in f] == ["accuracy rises with eps (0.1: 50.0 -> 0.2: 70.0)"]
    assert any(f.startswith("sanity failed") for f in flags)
    assert any("failed (RuntimeError: boom" in f for f in flags)
    ok = copy.deepcopy(r)
    ok["main"]["rows"][0]["accuracy"]["mean"] = 0.495  # within one sample of 100
    ok["curve"]["rows"][1]["accuracy"]["mean"] = 0.2
    ok["main"]["sanity"]["passed"], ok["curve"]["errors"] = True, []
    assert _report._flags(ok) == []


def test_flags_reach_the_table(board):
    b = copy.deepcopy(board[0])
    b["rows"][0]["flags"] = ["fgsm < pgd20 (1.0 < 2.0)"]
    assert "fgsm < pgd20 (1.0 < 2.0)" in _report.format_table(b)


def test_killed_run_resumes_to_the_same_table(board, budget_file, tmp_path):
    out = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, *_cmd(budget_file, out)], env=_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and not list(out.glob("train/*/last.json")):
        time.sleep(0.02)
    assert p.poll() is None, p.stderr.read().decode()[-2000:]
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "leaderboard.json").exists()
    resumed = lb.run("synthetic", "none", str(budget_file), 1, out, progress=False, log=lambda s: None)
    full = _numbers(board[0])
    got = _numbers(resumed)
    assert set(got) == {"standard", "none"}
    for k in got:
        assert got[k] == full[k], k
    # a finished folder is reused as is: nothing retrained or re-evaluated
    stamps = {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file() and f.suffix in (".safetensors",)
              or f.parent.name == "results"}
    again = lb.run("synthetic", "none", str(budget_file), 1, out, progress=False, log=lambda s: None)
    assert _numbers(again) == got
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps


def test_two_gloo_ranks_match_one_process(board, budget_file, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           *_cmd(budget_file, out, "--distributed")]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    got = json.loads((out / "leaderboard.json").read_text())
    assert got["meta"]["processes"] == 2
    full = json.loads(json.dumps(_numbers(board[0])))
    for k, v in _numbers(got).items():
        assert v == full[k], k


def test_bad_input_names_the_valid_choices(board, budget_file, tmp_path):
    with pytest.raises(ValueError, match=r"unknown method 'nope'; valid choices: all, standard, none"):
        lb.select_entries("nope")
    with pytest.raises(ValueError, match=r"dataset must be one of \[.*'digits'.*\], got 'mnistt'"):
        lb.run("mnistt", out=tmp_path / "a")
    with pytest.raises(ValueError, match=r"budget must be one of \['quick', 'full'\]"):
        lb.run("digits", budget="huge", out=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    out = board[1]
    before = {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()}
    with pytest.raises(ValueError, match=r"holds another leaderboard's results.*budget.epochs 2 \(asked: 3\)"):
        other = dict(TINY, epochs=3)
        f = tmp_path / "tiny.json"
        f.write_text(json.dumps(other))
        lb.run("synthetic", "none", str(f), 1, out, progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match=r"holds another leaderboard's results.*dataset 'synthetic' \(asked: 'digits'\)"):
        lb.run("digits", "none", str(budget_file), 1, out, progress=False, log=lambda s: None)
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "x.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not a leaderboard folder"):
        lb.run("synthetic", "none", str(budget_file), 1, tmp_path / "stuff", progress=False, log=lambda s: None)
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()} == before
    assert main(["leaderboard", "--methods", "nope", "--out", str(tmp_path / "b")]) == 2
    assert main(["leaderboard", "--budget", "nope", "--out", str(tmp_path / "b")]) == 2
    with pytest.raises(SystemExit):
        main(["leaderboard", "--seeds", "0"])
    with pytest.raises(ValueError, match="eps_factors"):
        lb.Budget(name="x", description="x", eps_factors=(0.5, 1.0))


def test_budgets_and_post_epochs_cap():
    from fastnoise.leaderboard._run import post_options
    q = lb.get_budget("quick", "digits")
    assert q.epochs < lb.get_budget("full", "digits").epochs and len(q.eps_factors) >= 4
    assert lb.get_budget("full", "cifar10").model == "preact_resnet18"
    nenni = methods.get("nenni")
    caps = post_options(nenni, q)  # every int post option named *epochs above the cap, nothing else
    assert caps == {o.name: q.post_epochs for o in nenni.post_options if o.name.endswith("epochs")
                    and o.default > q.post_epochs}
    assert post_options(nenni, lb.get_budget("full", "digits")) == {}
    assert nenni.training.start == "trained" and nenni.evaluation.seed_gradients is not None
    from fastnoise.leaderboard._run import method_options
    splits = fastnoise.data.load("synthetic")
    toy = ToyNoise()
    toy.options = toy.options + (Option("input_size", [32, 32], "[H, W]"),)
    assert method_options(toy, splits) == {"sigma": 0.05, "input_size": [8, 8]}  # a data-set option is filled in
    toy.example_options = {"sigma": 0.05, "input_size": [4, 4]}
    assert method_options(toy, splits)["input_size"] == [4, 4]  # unless the method's example sets it
    with pytest.raises(ValueError, match="start must be one of"):
        TrainingRecipe(start="later")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['epochz'\]"):
        lb.get_budget(str(_write(dict(TINY, epochz=1))), "digits")


def _write(d):
    import tempfile
    f = Path(tempfile.mkdtemp()) / "b.json"
    f.write_text(json.dumps(d))
    return f
