"""Generate exercises/NN_*.ipynb (stubs, no outputs) and solutions/NN_*.ipynb (executed) from one source.

The source is a jupytext percent script, exercises/source/NN_*.py. Code between
``# BEGIN SOLUTION`` and ``# END SOLUTION`` is the worked solution; in the exercise it becomes
``raise NotImplementedError`` at the same indentation. ``# NBVAL_CHECK_OUTPUT`` markers stay
in solutions only (an exercise has no stored output to compare with).

    python scripts/build_exercises.py            # regenerate and execute the solutions (full mode)
    python scripts/build_exercises.py 07         # only chapter 07's
    python scripts/build_exercises.py --check    # exit 1 if the committed notebooks are out of sync
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "exercises" / "source"
SOLUTION = re.compile(r"^([ \t]*)# BEGIN SOLUTION\n.*?^[ \t]*# END SOLUTION\n?", re.S | re.M)
MARKERS = re.compile(r"^[ \t]*# (BEGIN|END) SOLUTION\n?", re.M)
CHECK_OUTPUT = re.compile(r"^# NBVAL_CHECK_OUTPUT\n", re.M)
KERNEL = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
          "language_info": {"name": "python"}}


def to_notebook(script: str) -> nbformat.NotebookNode:
    """A percent script as a clean notebook: no jupytext metadata, the python3 kernel, stable cell ids."""
    notebook = jupytext.reads(script, fmt="py:percent")
    notebook.metadata = dict(KERNEL)
    # Ids from content, so that regenerating an unchanged source leaves git with nothing to show.
    for index, cell in enumerate(notebook.cells):
        cell.id = hashlib.sha1(f"{index}:{cell.source}".encode()).hexdigest()[:8]
    return notebook


def variants(source: Path) -> dict[str, nbformat.NotebookNode]:
    script = source.read_text()
    exercise = CHECK_OUTPUT.sub("", SOLUTION.sub(lambda m: f'{m.group(1)}raise NotImplementedError("your code here")\n', script))
    return {"exercises": to_notebook(exercise), "solutions": to_notebook(MARKERS.sub("", script))}


def _cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def check() -> list[str]:
    """Every way the committed notebooks differ from what their sources generate."""
    problems = []
    for source in sorted(SOURCES.glob("[0-9][0-9]_*.py")):
        for kind, expected in variants(source).items():
            path = ROOT / kind / f"{source.stem}.ipynb"
            if not path.exists():
                problems.append(f"{path.relative_to(ROOT)} is missing")
                continue
            committed = nbformat.read(path, as_version=4)
            if _cells(committed) != _cells(expected):
                first = next((i for i, (a, b) in enumerate(zip(_cells(committed), _cells(expected))) if a != b),
                             min(len(committed.cells), len(expected.cells)))
                problems.append(f"{path.relative_to(ROOT)} differs from {source.relative_to(ROOT)} at cell {first}")
            code = [c for c in committed.cells if c.cell_type == "code"]
            if kind == "exercises" and any(c.outputs or c.execution_count for c in code):
                problems.append(f"{path.relative_to(ROOT)} has outputs; exercises are stored clean")
            if kind == "solutions" and any(c.execution_count is None for c in code):
                problems.append(f"{path.relative_to(ROOT)} is not fully executed")
    return problems


def build(chapters: list[str]) -> None:
    from nbclient import NotebookClient

    for source in sorted(SOURCES.glob("[0-9][0-9]_*.py")):
        if chapters and source.stem[:2] not in chapters:
            continue
        notebooks = variants(source)
        nbformat.write(notebooks["exercises"], ROOT / "exercises" / f"{source.stem}.ipynb")
        solution = notebooks["solutions"]
        NotebookClient(solution, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "solutions")}}).execute()
        nbformat.write(solution, ROOT / "solutions" / f"{source.stem}.ipynb")
        print(f"built exercises/ and solutions/ {source.stem}.ipynb")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="two-digit chapter numbers to build (default: all)")
    parser.add_argument("--check", action="store_true", help="only check that the committed notebooks are in sync")
    args = parser.parse_args()
    if args.check:
        problems = check()
        print("\n".join(problems) or "exercises and solutions are in sync with their sources")
        sys.exit(1 if problems else 0)
    build(args.chapters)
