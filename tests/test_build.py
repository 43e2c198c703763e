"""Build metadata: recorded at build time, checked at import with one clear warning on mismatch."""
import json
import warnings

import pytest
import torch

from fastnoise import _ext


def test_build_info_recorded():
    info = _ext.build_info()
    assert info["torch"] == torch.__version__
    assert set(info) >= {"torch", "torch_cuda", "cuda_built", "cuda_arch_list", "git_commit", "version"}


def test_mismatch_gives_one_clear_warning(monkeypatch, tmp_path):
    p = tmp_path / "_build_info.json"
    p.write_text(json.dumps({"torch": "0.0.1"}))
    monkeypatch.setattr(_ext, "_BUILD_INFO_PATH", p)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        _ext._check_build_matches()
    assert len(w) == 1
    msg = str(w[0].message)
    assert "built against torch 0.0.1" in msg and torch.__version__ in msg and "--no-build-isolation" in msg


def test_no_warning_when_matching(monkeypatch, tmp_path):
    p = tmp_path / "_build_info.json"
    p.write_text(json.dumps({"torch": torch.__version__}))
    monkeypatch.setattr(_ext, "_BUILD_INFO_PATH", p)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        _ext._check_build_matches()
    assert not w


def test_sources_list_matches_tree():
    """setup.py and CMakeLists.txt read csrc/sources.txt: every listed file exists, every source is listed."""
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    listed = set()
    for line in (root / "csrc" / "sources.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            kind, path = line.split()
            assert kind in ("cpu", "glue", "cuda")
            assert (root / path).exists(), path
            listed.add(path)
    on_disk = {str(p.relative_to(root)) for ext in ("*.cpp", "*.cu") for p in (root / "csrc").rglob(ext)}
    assert on_disk == listed, f"unlisted: {on_disk - listed}, missing: {listed - on_disk}"
