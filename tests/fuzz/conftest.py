"""Prints how many cases the fuzz suite tried per target (issue 16: "reports how many cases it tried")."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import fuzzkit`


def pytest_terminal_summary(terminalreporter):
    import fuzzkit
    if not fuzzkit.COUNTS:
        return
    tr = terminalreporter
    tr.section("fuzz cases tried (issue 16): target  total  (valid / invalid)")
    for target in sorted(fuzzkit.COUNTS):
        tr.write_line(f"{target:34s} {fuzzkit.COUNTS[target]:5d}  ({fuzzkit.OUTCOMES[(target, 'result')]} / "
                      f"{fuzzkit.OUTCOMES[(target, 'error')]})")
    tr.write_line(f"{'total':34s} {sum(fuzzkit.COUNTS.values()):5d}")
