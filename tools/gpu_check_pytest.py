"""pytest plugin of tools/gpu_check.py (loaded with `-p gpu_check_pytest`, tools/ on PYTHONPATH).

* GPU_CHECK_COLLECTED=path: the node ids of the selected tests are written there after collection;
* GPU_CHECK_RESULTS=path: one JSON line per test outcome (node id, outcome, seconds, short reason);
  a module that cannot be collected (e.g. a test dependency missing on the GPU machine) gets one line with
  "when": "collect" (the check runs pytest with --continue-on-collection-errors: the other modules still run);
* GPU_CHECK_DEADLINE=unix time: a test that would start after it is skipped with the reason
  "gpu-check: tests stage budget spent" (works with pytest-xdist workers too), so the stage ends in time
  and the report says which tests did not run.
"""
from __future__ import annotations

import json
import os
import time

import pytest

BUDGET_REASON = "gpu-check: tests stage budget spent"
_config = None


def _deadline() -> float:
    return float(os.environ.get("GPU_CHECK_DEADLINE", "inf"))


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")  # a pytest-xdist worker: the controller writes the files


def pytest_configure(config):
    global _config
    _config = config


def pytest_collection_finish(session):
    path = os.environ.get("GPU_CHECK_COLLECTED")
    if path and not _is_worker(session.config):
        with open(path, "w") as f:
            f.writelines(item.nodeid + "\n" for item in session.items)


def _write(record: dict) -> None:
    path = os.environ.get("GPU_CHECK_RESULTS")
    if path and not (_config is not None and _is_worker(_config)):
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def pytest_collectreport(report):
    if report.failed:
        text = (getattr(report, "longreprtext", "") or str(report.longrepr)).strip().splitlines()
        why = next((l for l in reversed(text) if l.startswith("E ")), text[-1] if text else "")
        _write({"nodeid": report.nodeid, "when": "collect", "outcome": "error", "seconds": 0.0,
                "reason": why[:300]})


def pytest_runtest_setup(item):
    if time.time() > _deadline():
        pytest.skip(BUDGET_REASON)


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed") or \
            (report.when == "teardown" and report.outcome == "failed"):
        reason = ""
        if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2])
        elif report.outcome == "failed":
            reason = (getattr(report, "longreprtext", "") or str(report.longrepr)).strip().splitlines()[-1:] or [""]
            reason = reason[0][:300]
        _write({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
                "seconds": round(report.duration, 3), "reason": reason})
