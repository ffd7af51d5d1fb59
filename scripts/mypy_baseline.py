"""mypy's findings against the recorded baseline (.ci/mypy-baseline.txt): fail only on new ones.

    mypy | python scripts/mypy_baseline.py check .ci/mypy-baseline.txt    # exit 1 on a finding not recorded
    mypy | python scripts/mypy_baseline.py update .ci/mypy-baseline.txt   # record today's findings

A finding is compared as "file: error: message  [code]" without its line number (and without "on line N" inside
the message), so code moving up or down does not make old findings new. Each is counted: a second copy of a
recorded finding in the same file is new.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

FINDING = re.compile(r"^(?P<file>[^:\s]+\.pyi?):\d+(?::\d+)?: error: (?P<rest>.*)$")


def normalise(line: str) -> str | None:
    """The line-number-free form of one mypy error line; None for notes and summaries."""
    m = FINDING.match(line.rstrip("\n"))
    if not m:
        return None
    rest = re.sub(r"\bon line \d+\b", "on line N", m["rest"])
    return f"{m['file']}: error: {rest}"


def findings(lines) -> Counter:
    return Counter(f for f in map(normalise, lines) if f)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("check", "update"):
        print(__doc__, file=sys.stderr)
        return 2
    command, baseline = argv[0], Path(argv[1])
    lines = sys.stdin.readlines()
    current = findings(lines)
    if command == "update":
        baseline.write_text("".join(f"{f}\n" for f in sorted(current.elements())), encoding="utf-8")
        print(f"{baseline}: {sum(current.values())} findings recorded")
        return 0
    recorded = Counter(f for f in baseline.read_text(encoding="utf-8").splitlines() if f.strip())
    new = current - recorded
    if new:
        print(f"mypy: {sum(new.values())} new finding(s), not in {baseline}:")
        for line in lines:  # with their line numbers, as mypy printed them
            f = normalise(line)
            if f and new[f] > 0:
                new[f] -= 1
                print("  " + line.rstrip("\n"))
        print("Fix them (or, for a deliberate exception, add `# type: ignore[code]` on the line).")
        return 1
    gone = sum((recorded - current).values())
    print(f"mypy: no new findings ({sum(current.values())} recorded ones remain"
          + (f"; {gone} fixed: scripts/lint.sh --update-baseline records that)" if gone else ")"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
