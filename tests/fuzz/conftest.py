"""`import fuzzkit` for the fuzz tests. The count of cases tried per target is printed by tests/conftest.py
(issue 16: "reports how many cases it tried"), which also collects it from pytest-xdist workers."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import fuzzkit`
