"""Backend selection from the environment and the `info` command, in fresh interpreters."""
import os
import subprocess
import sys


def _run(code: str, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=300)


def test_fastnoise_backend_env_sets_default():
    r = _run("import fastnoise; print(fastnoise.current_backend())", FASTNOISE_BACKEND="reference")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "reference"


def test_bad_backend_env_is_an_error():
    r = _run("import fastnoise", FASTNOISE_BACKEND="gpu")
    assert r.returncode != 0 and "backend must be one of" in r.stderr


def test_info_command_reports_backends():
    r = subprocess.run([sys.executable, "-m", "fastnoise", "info"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "backends usable on cpu" in r.stdout and "cpu        yes" in r.stdout
    assert "built against torch" in r.stdout


def test_triton_on_cpu_without_interpreter_is_refused():
    r = _run("import fastnoise; fastnoise.rng.raw(4, 0, backend='triton')", TRITON_INTERPRET="0")
    assert r.returncode != 0 and "TRITON_INTERPRET=1" in r.stderr
