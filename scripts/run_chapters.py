"""Run the course's chapters headless, in full mode unless --quick.

    python scripts/run_chapters.py --out build            # HTML per chapter + build/SUMMARY.md
    python scripts/run_chapters.py --inplace 00_orientation  # store outputs in the notebook itself

Each chapter asserts its results with ``minidiff3d.assert_bar``, which logs them to the file
named by ``MINIDIFF3D_RESULTS``; the summary table lists them with each chapter's run time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parents[1]


def run(path: Path, quick: bool, plotly_renderer: str, timeout: int) -> tuple[nbformat.NotebookNode, list[dict], float, str]:
    """Execute one notebook in a fresh kernel; return it, its logged results, its time and an error."""
    notebook = nbformat.read(path, as_version=4)
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as log:
        log_path = log.name
    env = {"MINIDIFF3D_RESULTS": log_path, "PLOTLY_RENDERER": plotly_renderer, "MINIDIFF3D_QUICK": "1" if quick else "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of this process
    error, start = "", time.perf_counter()
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3", store_widget_state=True, resources={"metadata": {"path": str(path.parent)}}).execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        error = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    seconds = time.perf_counter() - start
    results = [json.loads(line) for line in Path(log_path).read_text().splitlines()]
    os.unlink(log_path)
    return notebook, results, seconds, error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="notebook names (e.g. 00_orientation); all when none")
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="folder for HTML and SUMMARY.md")
    parser.add_argument("--inplace", action="store_true", help="write outputs back into notebooks/ instead of HTML")
    parser.add_argument("--quick", action="store_true", help="quick mode (MINIDIFF3D_QUICK=1)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args()

    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.chapters:
        paths = [p for p in paths if p.stem in args.chapters or p.stem[:2] in args.chapters]
        if not paths:
            parser.error(f"chapters: no notebook matches {args.chapters}")
    # Stored notebooks keep plotly's compact JSON; stand-alone HTML embeds plotly.js to work offline.
    renderer = "plotly_mimetype" if args.inplace else "plotly_mimetype+notebook"
    rows, failed = [], False
    for path in paths:
        print(f"running {path.name} ...", flush=True)
        notebook, results, seconds, error = run(path, args.quick, renderer, args.timeout)
        failed |= bool(error) or not all(r["passed"] for r in results)
        if args.inplace and not error:
            nbformat.write(notebook, path)
        elif args.inplace:  # keep the stored outputs; the broken run goes to --out for a look
            args.out.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, args.out / f"{path.stem}.failed.ipynb")
        else:
            from nbconvert import HTMLExporter

            args.out.mkdir(parents=True, exist_ok=True)
            html, _ = HTMLExporter().from_notebook_node(notebook)
            (args.out / f"{path.stem}.html").write_text(html)
        shown = "; ".join(f"{r['name']} = {r['value']:.4g} ({'≥' if r['higher_is_better'] else '≤'} {r['bar']:g})" for r in results)
        status = "error: " + error if error else ("pass" if all(r["passed"] for r in results) else "below bar")
        rows.append(f"| {path.stem} | {status} | {seconds:.0f} s | {shown or '-'} |")

    mode = "quick" if args.quick else "full"
    table = "\n".join([f"# Course run ({mode} mode)", "", "| chapter | status | time | asserted results |", "|---|---|---|---|", *rows])
    print(table)
    if not args.inplace:
        (args.out / "SUMMARY.md").write_text(table + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
