"""Mutation score per module, from mutmut's results, less the mutants judged equivalent.

`make mutate` runs mutmut over the modules whose mistakes would silently change a decision (listed in
pyproject.toml under [tool.mutmut]) and then this report. A mutant is *equivalent* when no test could
kill it because the program behaves the same (e.g. a loop bound that only changes how much is
precomputed); each one is listed in tools/equivalent_mutants.txt with the reason it was judged so.
The score is killed / (mutants - equivalent); the exit status is 1 when a module is below --min.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

EQUIVALENT_FILE = Path(__file__).with_name("equivalent_mutants.txt")
KILLED = {"killed", "timeout"}  # a mutant that hangs the tests is caught by them


def read_equivalent(path: Path = EQUIVALENT_FILE) -> dict[str, str]:
    """``mutant name  # why it is equivalent`` per line."""
    found = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, _, why = line.partition("#")
        if name.strip():
            found[name.strip()] = why.strip()
    return found


def read_results() -> dict[str, str]:
    """mutant name -> status, as ``mutmut results --all true`` prints them."""
    done = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True)
    results = {}
    for line in done.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            results[name] = status
    return results


def module_of(mutant: str) -> str:
    """``longdoc.x.metrics.x_f1__mutmut_3`` -> ``longdoc.x.metrics`` (methods: ``xǁClassǁname``)."""
    return re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=float, default=80.0, help="lowest acceptable score per module, in percent")
    args = parser.parse_args()
    results, equivalent = read_results(), read_equivalent()
    stale = sorted(set(equivalent) - set(results))
    by_module: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for name, status in results.items():
        module = module_of(name)
        if name in equivalent:
            by_module[module]["equivalent"] += 1
            continue
        by_module[module]["killed" if status in KILLED else status] += 1
        if status not in KILLED:
            survivors[module].append(f"{name}: {status}")
    header = ("mutants", "killed", "survived", "no tests", "equivalent", "score")
    print(f"{'module':<26} " + " ".join(f"{h:>{max(6, len(h))}}" for h in header))
    failing = []
    for module in sorted(by_module):
        c = by_module[module]
        total = sum(c.values())
        counted = total - c["equivalent"]
        score = 100.0 * c["killed"] / counted if counted else 100.0
        print(f"{module:<26} {total:>7} {c['killed']:>6} {c['survived']:>8} {c['no tests']:>8} {c['equivalent']:>10} "
              f"{score:>5.1f}%")
        if score < args.min:
            failing.append(module)
    for module in sorted(survivors):
        print(f"\nnot killed in {module} (`mutmut show NAME` prints the change):")
        print("\n".join(f"  {line}" for line in sorted(survivors[module])))
    if stale:
        print(f"\n{len(stale)} mutants in {EQUIVALENT_FILE.name} no longer exist (the source changed): review them")
    if failing:
        print(f"\nbelow {args.min:.0f}%: {', '.join(failing)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
