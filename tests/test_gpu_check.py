"""tools/gpu_check.py's bookkeeping, which runs on every machine: stage budgets (unused time carries to the next
stage, a stage with under 5 s left is reported "not run: budget"), the report rewritten after every stage, the
watchdog's stop() (running stage failed, later ones not run, logs packed into logs.tar.gz), the greedy sanitizer
cover and the discovery of CUDA ops / benchmark modules. The whole dry run is `make gpu-check DRY_RUN=1` (CI)."""
import csv
import importlib.util
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("_gpu_check_under_test", ROOT / "tools" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(out: Path) -> list:
    with (out / "report.csv").open() as f:
        return list(csv.DictReader(f))


def test_budgets_carry_over_and_the_report_is_rewritten_per_stage(gc, tmp_path):
    total = sum(b for _, b in gc.STAGES)
    c = gc.Check(tmp_path, dry=True, budget=total)
    c.stage("env", lambda deadline: "ok")
    assert "partial report" in (tmp_path / "report.md").read_text()
    assert [r["stage"] for r in _rows(tmp_path)] == []  # no rows yet, but both files exist
    seen = {}
    c.stage("build", lambda deadline: seen.setdefault("left", deadline - time.time()) and "ok")
    env_budget, build_budget = gc.STAGES[0][1], gc.STAGES[1][1]
    assert seen["left"] == pytest.approx(env_budget + build_budget, abs=2)  # env's unused time carried over
    c.stage("tests", lambda deadline: 1 / 0)  # a broken stage is a row, the next still runs
    assert c.failed and any(r["status"].startswith("error: ZeroDivisionError") for r in _rows(tmp_path))


def test_a_stage_without_time_is_reported_not_run(gc, tmp_path):
    c = gc.Check(tmp_path, dry=True, budget=3)
    ran = []
    c.stage("env", lambda deadline: ran.append(1))
    assert not ran and c.stages[0]["status"].startswith("skipped: no time left")
    assert _rows(tmp_path)[0]["status"].startswith(gc.BUDGET)


def test_stop_fails_the_running_stage_and_packs_the_logs(gc, tmp_path):
    c = gc.Check(tmp_path, dry=True, budget=480)
    c.stage("env", lambda deadline: "ok")
    (c.logs / "build.log").write_text("compiling...\n")
    c.stop("global timeout")
    status = {r["stage"]: r["status"] for r in _rows(tmp_path) if r["item"] == "(stage)"}
    assert status["build"] == "failed: global timeout"
    assert all(status[s] == "not run: global timeout" for s in ("tests", "sanitizer", "bench"))
    md = (tmp_path / "report.md").read_text()
    assert "**FAILED**" in md and "partial report" not in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs.tar.gz", "report.csv", "report.md"]
    with tarfile.open(tmp_path / "logs.tar.gz") as tar:
        assert "logs/build.log" in tar.getnames()


def test_cover_runs_every_op_and_kernel_with_few_cases(gc):
    seen = {"a/big": {"ops": ["x", "y"], "kernels": ["k1", "k2"]}, "b/x": {"ops": ["x"], "kernels": ["k1"]},
            "c/z": {"ops": ["z"], "kernels": ["k3"]}, "d/none": {"ops": [], "kernels": []}}
    assert gc.cover(seen) == ["a/big", "c/z"]


def test_discovery_finds_the_cuda_ops_and_benchmark_modules(gc):
    ops = gc.cuda_ops()
    assert "philox" in ops and "mask_blend" in ops and len(ops) >= 8
    assert {"bench_noise_add", "bench_mask_blend", "bench_nenni"} <= set(gc.bench_modules())


def test_peak_table_matches_the_names_torch_reports(gc):
    assert gc.peaks_for("NVIDIA H200")["hbm_gbps"] == 4800
    assert gc.peaks_for("NVIDIA H100 80GB HBM3")["bf16"] == pytest.approx(989.4)
    assert gc.peaks_for("NVIDIA H100 PCIe")["hbm_gbps"] == 2000
    assert gc.peaks_for("NVIDIA A100-SXM4-80GB")["hbm_gbps"] == 2039
    assert gc.peaks_for("Tesla T4") is None
