"""The package's layers (docs/architecture.md): ``base -> ops -> nn -> methods -> train | attacks -> cli``.

Walks every module of fastnoise (and fastnoise.triton_kernels) with `ast`, resolves every import (module
level and inside functions, relative ones, ``importlib.import_module("...")`` with a literal), and checks
that none runs from a lower layer to a higher one; train and attacks are siblings and import neither
each other. `fastnoise/__init__.py` is the facade (it may import anything); a name imported from it is
resolved to the module it comes from.
"""
import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# (layer, module prefixes); a module belongs to the layer of its longest matching prefix
LAYERS = [
    ("base", ["fastnoise._backend", "fastnoise._checks", "fastnoise._ext", "fastnoise._cpu_capability", "fastnoise.version", "fastnoise.rng",
              "fastnoise.reference", "fastnoise._C", "fastnoise._C_cuda"]),
    ("ops", ["fastnoise.ops", "fastnoise.triton_kernels"]),
    ("nn", ["fastnoise.nn", "fastnoise.adversarial", "fastnoise.data", "fastnoise.models"]),
    ("methods", ["fastnoise.methods", "fastnoise.convert", "fastnoise.bitops", "fastnoise.nenni"]),
    ("train", ["fastnoise.train"]),
    ("attacks", ["fastnoise.attacks"]),
    ("cli", ["fastnoise.cli", "fastnoise.__main__", "fastnoise.demo", "fastnoise.bench", "fastnoise._info",
             "fastnoise.leaderboard", "fastnoise.train.cli", "fastnoise.attacks.cli"]),
]
RANK = {"base": 0, "ops": 1, "nn": 2, "methods": 3, "train": 4, "attacks": 4, "cli": 5}
SIBLINGS = {("train", "attacks"), ("attacks", "train")}


def _modules() -> dict[str, Path]:
    mods = {}
    for base, pkg in ((ROOT / "fastnoise", "fastnoise"), (ROOT / "triton_kernels", "fastnoise.triton_kernels")):
        for f in base.rglob("*.py"):
            rel = f.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([pkg] + parts)] = f
    return mods


MODULES = _modules()


def layer_of(module: str) -> str:
    best, best_len = None, -1
    for layer, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = layer, len(p)
    if best is None:
        raise AssertionError(f"module {module} is in no layer of tests/test_layering.py (add it to LAYERS and to "
                             f"docs/architecture.md)")
    return best


def _root_bindings() -> dict[str, str]:
    """Names the facade fastnoise/__init__.py imports from its submodules: name -> module."""
    tree = ast.parse(MODULES["fastnoise"].read_text())
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            src = "fastnoise" + ("." + node.module if node.module else "")
            for a in node.names:
                out[a.asname or a.name] = src if node.module else f"fastnoise.{a.name}"
    return out


ROOT_NAMES = _root_bindings()


def _resolve_from(importer: str, node: ast.ImportFrom) -> list[str]:
    pkg = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
    if node.level:
        base = pkg
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        src = base + ("." + node.module if node.module else "")
    else:
        src = node.module
    out = []
    for a in node.names:
        sub = f"{src}.{a.name}"
        if sub in MODULES:
            out.append(sub)
        elif src == "fastnoise":
            out.append(ROOT_NAMES.get(a.name, "fastnoise.cli"))  # a name the facade defines itself: top layer
        else:
            out.append(src)
    return out


def imports_of(module: str) -> list[tuple[int, str]]:
    tree = ast.parse(MODULES[module].read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("fastnoise.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level or (node.module or "").startswith("fastnoise"):
                out += [(node.lineno, t) for t in _resolve_from(module, node)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and node.args[0].value.startswith("fastnoise.")):
            out.append((node.lineno, node.args[0].value))
    return [(line, t) for line, t in out if t.startswith("fastnoise") and t != "fastnoise"]


def violations() -> list[str]:
    bad = []
    for module in sorted(MODULES):
        if module == "fastnoise":
            continue  # the facade
        lo = layer_of(module)
        for line, target in imports_of(module):
            hi = layer_of(target)
            if RANK[hi] > RANK[lo] or (lo, hi) in SIBLINGS:
                bad.append(f"{os.path.relpath(MODULES[module], ROOT)}:{line}: {module} ({lo}) imports {target} ({hi})")
    return bad


def test_every_module_is_in_a_layer():
    for module in MODULES:
        if module != "fastnoise":
            layer_of(module)
    assert len(MODULES) > 50  # the walk found the package


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    bad = violations()
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_rng_imports_nothing_from_ops():
    assert not [t for _, t in imports_of("fastnoise.rng") if t.startswith("fastnoise.ops")]


def test_the_walk_sees_relative_lazy_and_string_imports(tmp_path, monkeypatch):
    """The checker catches a violation written in each form (so the test above can fail)."""
    fake = tmp_path / "fastnoise" / "nn" / "fake.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..train import fit\n"
                    "def f():\n    from .. import attacks\n    import fastnoise.methods\n"
                    "    importlib.import_module('fastnoise.cli')\n")
    monkeypatch.setitem(MODULES, "fastnoise.nn.fake", fake)
    bad = [b for b in violations() if "fake" in b]
    assert [b.split(" imports ")[1] for b in bad] == ["fastnoise.train (train)", "fastnoise.attacks (attacks)",
                                                      "fastnoise.methods (methods)", "fastnoise.cli (cli)"]


def test_import_fastnoise_exposes_subpackages_lazily():
    import subprocess
    import sys
    code = ("import sys, fastnoise; lazy = [m for m in ('fastnoise.attacks', 'fastnoise.train', 'fastnoise.data', "
            "'fastnoise.models', 'fastnoise.methods') if m in sys.modules]; "
            "assert not lazy, lazy; fastnoise.attacks.evaluate; fastnoise.train.fit; fastnoise.methods.available; "
            "fastnoise.data.load; fastnoise.models.build; fastnoise.nenni.distill; fastnoise.nn.GaussianNoise; "
            "fastnoise.adversarial.pgd; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    import fastnoise
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fastnoise.nope
