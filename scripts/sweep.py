"""Any text-to-3D method over prompts and seeds, scored as chapter 04 scores it: the results files the chapters cite.

    python scripts/sweep.py --seeds 0 1 2 3 4                                          # DreamFusion, the defaults
    python scripts/sweep.py --method dreamfusion --set guidance.guidance_scale=15 system.lambda_sparsity=0.1
    python scripts/sweep.py --prompts "a pink mug" --fit-renders                      # the control, below
    python scripts/sweep.py --prompts "a yellow duck" --janus --seeds 0 1 2 3 4 5 6 7 8 9 --set system.steps=200 \
        --out notebooks/results/04_janus.json                                         # chapter 04's Janus table

Each run is ``System.from_config(run_config(method, prompt, overrides))`` with the seed set, so a
``--set`` takes any key of the method's config (``minidiff3d methods`` lists the presets). Prints a
markdown table: R-precision per prompt and seed (toy CLIP, eight lit views at elevation 15°, all 80
toy captions as candidates), each seed's mean, and the slowest run; then, per prompt, the mean
saturation of those views and the CLIP diversity of the front views across seeds. One DreamFusion
run is about a minute and a half on one thread: set OMP_NUM_THREADS=1 and run two sweeps side by
side on 2 cores.

``--fit-renders`` replaces the guidance by plain MSE to the toy world's own renders of the prompt's
object (``System.fit_images``), with the same field, optimiser, schedule, cameras and score. It
separates what the field can hold from what the guidance finds: if the control scores well and the
guidance does not, the prior's gradient is what falls short.

``--janus`` runs each prompt and seed with and without view-dependent prompts, renders each result
from behind (azimuth 180°, elevation 15°, lit), and records whether toy CLIP takes that back for a
front view (``metrics.janus_rate``).

``--out`` writes the records as JSON with the command, the machine, the date and the package version.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

import minidiff3d
from minidiff3d.config import parse_assignment
from minidiff3d.images import to_channels_first
from minidiff3d.metrics import clip_diversity, janus_rate, saturation
from minidiff3d.priors import load, object_captions
from minidiff3d.runtime import describe_machine
from minidiff3d.systems import PRESETS, System, orbit_r_precision, run_config
from minidiff3d.toyworld import make_object, render as toy_render

EVAL_ELEVATION, FRONT_AZIMUTH = 15.0, 30.0


def build(pipe, method: str, prompt: str, seed: int, overrides: dict, **more) -> System:
    return System.from_config(run_config(method, prompt, {**overrides, "system.seed": seed, **more}), pipe)


def fit_to_renders(run: System, n_views: int = 96) -> list[float]:
    """Fit ``run``'s field by MSE to ``n_views`` toy-world renders of its prompt's object; returns the loss per step.

    The prompt must name a toy object as its last two words ("a pink mug"); the cameras are drawn
    as the run draws them, at its render size and field of view.
    """
    colour, category = run.prompt.prompt.split()[-2:]
    obj = make_object(category, colour, run.config.seed)
    cameras, size = run.sample_cameras(n_views), run.config.render_size
    targets = torch.stack([to_channels_first(toy_render(obj, c.cpu(), size, size, run.config.fov_deg)["image"])
                           for c in cameras.c2w])
    return run.fit_images(targets, cameras)


def sweep(prompts: list[str], seeds: list[int], overrides: dict, method: str = "dreamfusion", fit_renders: bool = False,
          pipe=None, clip=None) -> list[dict]:
    """One record per prompt and seed: R-precision, the saturation of the scoring views, seconds, and the front view."""
    pipe, clip = pipe or load("toy-sd"), clip or load("toy-clip")
    candidates, records = object_captions(), []
    for seed in seeds:
        for prompt in prompts:
            tic = time.perf_counter()
            run = build(pipe, method, prompt, seed, overrides)
            fit_to_renders(run) if fit_renders else run.fit(show_progress=False)
            seconds = time.perf_counter() - tic
            views = run.render(torch.full((8,), EVAL_ELEVATION), torch.arange(8) * 45.0, size=64, shading="lambertian")["rgb"]
            records.append(dict(prompt=prompt, seed=seed, r_precision=orbit_r_precision(run, prompt, candidates, clip),
                                saturation=round(saturation(views), 4), seconds=round(seconds, 1),
                                front=run.render(EVAL_ELEVATION, FRONT_AZIMUTH, size=64, shading="lambertian")["rgb"]))
            run.close()
            print(f"seed {seed} {prompt}: R-precision {records[-1]['r_precision']:.3f} in {seconds:.0f} s", flush=True)
    return records


def diversity(records: list[dict], clip) -> dict[str, float]:
    """Per prompt with at least two seeds: the CLIP diversity of its front views across seeds."""
    fronts: dict[str, list] = {}
    for r in records:
        fronts.setdefault(r["prompt"], []).append(r["front"])
    return {p: round(clip_diversity(torch.cat(views), clip), 4) for p, views in fronts.items() if len(views) > 1}


def janus_sweep(prompts: list[str], seeds: list[int], overrides: dict, method: str = "dreamfusion", pipe=None, clip=None
                ) -> list[dict]:
    """One record per prompt, seed and prompt style: is the back view (azimuth 180°) taken for a front?"""
    pipe, clip = pipe or load("toy-sd"), clip or load("toy-clip")
    records = []
    for prompt in prompts:
        for view_dependent in (True, False):
            for seed in seeds:
                tic = time.perf_counter()
                run = build(pipe, method, prompt, seed, overrides, **{"prompt.view_dependent": view_dependent})
                run.fit(show_progress=False)
                back = run.render(EVAL_ELEVATION, 180.0, size=64, shading="lambertian")["rgb"]
                run.close()
                records.append(dict(prompt=prompt, seed=seed, view_dependent=view_dependent,
                                    janus=janus_rate(back, prompt, clip) == 1.0, seconds=round(time.perf_counter() - tic, 1)))
                print(json.dumps(records[-1]), flush=True)
    return records


def janus_table(records: list[dict]) -> str:
    """Janus backs per prompt and prompt style, as 'k of n'."""
    lines = ["| prompt | view-dependent prompts | plain prompt |", "|---|---|---|"]
    for prompt in dict.fromkeys(r["prompt"] for r in records):
        cells = []
        for view_dependent in (True, False):
            runs = [r for r in records if r["prompt"] == prompt and r["view_dependent"] == view_dependent]
            cells.append(f"{sum(r['janus'] for r in runs)} of {len(runs)}")
        lines.append(f"| {prompt} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def table(records: list[dict], prompts: list[str], seeds: list[int], diversities: dict[str, float] | None = None) -> str:
    """R-precision per seed and prompt with each seed's mean; then saturation and diversity per prompt."""
    score = {(r["prompt"], r["seed"]): r for r in records}
    names = [p.split()[-1] for p in prompts]
    lines = ["| seed | " + " | ".join(names) + " | mean |", "|---" * (len(prompts) + 2) + "|"]
    for seed in seeds:
        scores = [score[p, seed]["r_precision"] for p in prompts]
        lines.append(f"| {seed} | " + " | ".join(f"{s:.2f}" for s in scores) + f" | {sum(scores) / len(scores):.3f} |")
    overall = sum(r["r_precision"] for r in records) / len(records)
    slowest = max(r["seconds"] for r in records)
    lines += ["", f"mean over seeds: {overall:.3f}; slowest run {slowest:.0f} s", "",
              "| prompt | saturation | diversity across seeds |", "|---|---|---|"]
    for prompt in prompts:
        runs = [r for r in records if r["prompt"] == prompt]
        spread = (diversities or {}).get(prompt)
        lines.append(f"| {prompt} | {sum(r['saturation'] for r in runs) / len(runs):.3f} | "
                     f"{'–' if spread is None else format(spread, '.3f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="dreamfusion", choices=sorted(PRESETS))
    parser.add_argument("--prompts", nargs="+", default=["a yellow duck", "a red torus", "a blue cube", "a green cone",
                                                         "an orange mushroom", "a purple snowman", "a pink mug",
                                                         "a brown house"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides by dotted key (values as JSON), e.g. guidance.guidance_scale=15")
    parser.add_argument("--fit-renders", action="store_true", help="MSE to the toy world's renders instead of the guidance")
    parser.add_argument("--janus", action="store_true", help="Janus backs with and without view-dependent prompts")
    parser.add_argument("--out", type=Path, help="write the records as JSON")
    args = parser.parse_args(argv)
    try:
        overrides = dict(parse_assignment(item) for item in args.set)
        for key in ("system.seed", "prompt.text", "prompt.view_dependent", "method"):
            if key in overrides:
                raise ValueError(f"--set {key}: set by the sweep itself (--seeds, --prompts, --janus)")
        run_config(args.method, "a red duck", overrides)  # checked before the first run
    except ValueError as error:
        raise SystemExit(f"sweep: {error}")
    clip = load("toy-clip")
    saved = dict(command="python scripts/sweep.py " + " ".join(sys.argv[1:] if argv is None else argv),
                 machine=describe_machine(), date=datetime.date.today().isoformat(), version=minidiff3d.__version__,
                 method=args.method, overrides=overrides)
    if args.janus:
        records = janus_sweep(args.prompts, args.seeds, overrides, args.method, clip=clip)
        print(janus_table(records))
        saved.update(records=records)
    else:
        records = sweep(args.prompts, args.seeds, overrides, args.method, args.fit_renders, clip=clip)
        diversities = diversity(records, clip)
        print(table(records, args.prompts, args.seeds, diversities))
        saved.update(fit_renders=args.fit_renders, diversity=diversities,
                     records=[{k: v for k, v in r.items() if k != "front"} for r in records])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(saved, indent=1) + "\n")


if __name__ == "__main__":
    main()
