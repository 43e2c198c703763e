"""tools/triton_compile_check.py: the interpreter's launches are recorded, and a kernel the GPU compiler rejects
(but the interpreter runs) fails the check. Design note 65."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

KERNELS = '''
import triton
import triton.language as tl

SCALE_OK = tl.constexpr(3)
SCALE_BAD: tl.constexpr = 3   # an annotated plain int: the interpreter reads it, the compiler refuses


@triton.jit
def good(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(y_ptr + i, tl.load(x_ptr + i, mask=m) * SCALE_OK, mask=m)


@triton.jit
def bad(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(y_ptr + i, tl.load(x_ptr + i, mask=m) * SCALE_BAD, mask=m)
'''


def _tool():
    spec = importlib.util.spec_from_file_location("_tcc_test", ROOT / "tools" / "triton_compile_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="records the interpreter's launches")
def test_records_launches_and_fails_a_kernel_the_gpu_compiler_rejects(tmp_path, monkeypatch):
    (tmp_path / "tcc_kernels.py").write_text(KERNELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import tcc_kernels
    rec = _tool().Recorder(str(tmp_path / "rec"))
    rec.install()
    try:
        x = torch.arange(10, dtype=torch.float32)
        for fn in (tcc_kernels.good, tcc_kernels.bad):
            y = torch.empty_like(x)
            fn[(1,)](x, y, 10, BLOCK=16)
            assert torch.equal(y, 3 * x)  # the interpreter runs both
    finally:
        rec.uninstall()
    rec.write()
    (path,) = (tmp_path / "rec").glob("*.json")
    recs = {r["kernel"]: r for r in json.loads(path.read_text())}
    assert recs["good"]["args"] == {"x_ptr": ["ptr", "fp32"], "y_ptr": ["ptr", "fp32"], "n": ["scalar", "i32"],
                                    "BLOCK": ["value", 16]}
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "triton_compile_check.py"), str(tmp_path / "rec"),
                        "--arch", "80", "--jobs", "1"], capture_output=True, text=True, timeout=600, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "tcc_kernels.good" in out and "tcc_kernels.bad" in out
    assert "FAILED sm_80 tcc_kernels.bad" in out and "FAILED sm_80 tcc_kernels.good" not in out
    assert "Cannot access global variable SCALE_BAD" in out


def test_nothing_recorded_is_an_error(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "triton_compile_check.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no recorded launches" in r.stderr


def test_gpu_launch_args_of_the_implicit_gemm_kernels():
    """The compile check also compiles the GEMM kernels as a GPU launches them (blocks, CAST, output dtype)."""
    from fastnoise.triton_kernels import noise_conv, sampled
    rec = {"x_ptr": ["ptr", "bf16"], "out_ptr": ["ptr", "fp32"], "CAST": ["value", True],
           "BLOCK_M": ["value", 32], "BLOCK_N": ["value", 32], "BLOCK_K": ["value", 32]}
    for mod, kernel in ((noise_conv, "_noise_conv_kernel"), (sampled, "_sampled_gemm_kernel")):
        gpu = mod.gpu_launch_args(kernel, rec)
        assert gpu["out_ptr"] == ["ptr", "bf16"] and gpu["CAST"] == ["value", False]
        assert (gpu["BLOCK_M"], gpu["BLOCK_N"], gpu["BLOCK_K"]) == (["value", 64], ["value", 64], ["value", 32])
        assert mod.gpu_launch_args("other", rec) is rec
    f64 = {**rec, "x_ptr": ["ptr", "fp64"], "out_ptr": ["ptr", "fp64"]}
    assert noise_conv.gpu_launch_args("_noise_conv_kernel", f64)["CAST"] == ["value", True]  # float64 casts
    assert sampled.gpu_launch_args("_sampled_gemm_kernel", f64)["CAST"] == ["value", False]
    assert noise_conv.gpu_launch_args("_noise_conv_kernel", f64)["BLOCK_K"] == ["value", 16]
