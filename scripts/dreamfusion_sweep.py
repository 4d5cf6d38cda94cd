"""DreamFusion over prompts and seeds, scored as chapter 04 scores it: the tables in the chapter's notes.

    python scripts/dreamfusion_sweep.py --seeds 0 1 2 3 4                               # the defaults
    python scripts/dreamfusion_sweep.py --set guidance_scale=15 lambda_sparsity=0.1     # any DreamFusionConfig field
    python scripts/dreamfusion_sweep.py --prompts "a pink mug" --fit-renders           # the control, below
    python scripts/dreamfusion_sweep.py --prompts "a yellow duck" --janus --seeds 0 1 2 3 4 5 6 7 --set steps=200 \
        --out notebooks/results/04_janus.json                                          # chapter 04's Janus table

Prints a markdown table: R-precision per prompt and seed (toy CLIP, eight lit views at elevation 15°,
all 80 toy captions as candidates), each seed's mean, and the slowest run. One run is about a
minute and a half on one thread: set OMP_NUM_THREADS=1 and run two sweeps side by side on 2 cores.

``--fit-renders`` replaces SDS by plain MSE to the toy world's own renders of the prompt's object,
with the same field, optimiser, schedule, cameras and score. It separates what the field can hold
from what the guidance finds: if the control scores well and SDS does not, the prior's gradient is
what falls short.

``--janus`` runs each prompt and seed with and without view-dependent prompts, renders each result
from behind (azimuth 180°, elevation 15°, lit), and records whether toy CLIP takes that back for a
front view (``metrics.janus_rate``). ``--out`` writes the records as JSON, which the chapter loads.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import torch

from minidiff3d.metrics import janus_rate
from minidiff3d.pipelines import DreamFusion, DreamFusionConfig, orbit_r_precision
from minidiff3d.priors import load, object_captions
from minidiff3d.toyworld import make_object, render as toy_render


def fit_to_renders(run: DreamFusion, n_views: int = 96) -> list[float]:
    """Fit ``run``'s field by MSE to ``n_views`` toy-world renders of its prompt's object; returns the loss per step.

    The prompt must name a toy object as its last two words ("a pink mug"); cameras, render size,
    learning-rate schedule and step count are the run's own, and every render is lit from the toy light.
    """
    config = run.config
    colour, category = run.prompt.prompt.split()[-2:]
    obj = make_object(category, colour, config.seed)
    c2w, _, _ = run.sample_cameras(n_views)
    size = config.render_size
    targets = torch.stack([toy_render(obj, c.cpu(), size, size, config.fov_deg)["image"] for c in c2w])
    targets = targets.permute(0, 3, 1, 2).to(run.device)  # [V,3,size,size]
    light = torch.nn.functional.normalize(run.light_centers(c2w[:1]), dim=-1)
    losses = []
    for step in range(config.steps):
        run.schedule_learning_rate(run.fraction_done(step))
        i = torch.randint(n_views, (1,), generator=run.generator).item()
        rendered = run.renderer(c2w[i:i + 1], size, run.focal(size), "lambertian", light, generator=run.generator)["rgb"]
        loss = (rendered - targets[i:i + 1]).pow(2).mean()
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        losses.append(loss.item())
    return losses


def sweep(prompts: list[str], seeds: list[int], overrides: dict, fit_renders: bool = False, pipe=None, clip=None
          ) -> dict[tuple[str, int], tuple[float, float]]:
    """``{(prompt, seed): (R-precision, seconds)}`` for every prompt and seed."""
    pipe, clip = pipe or load("toy-sd"), clip or load("toy-clip")
    candidates, results = object_captions(), {}
    for seed in seeds:
        for prompt in prompts:
            tic = time.perf_counter()
            run = DreamFusion(pipe, prompt, DreamFusionConfig(**{**overrides, "seed": seed}))
            fit_to_renders(run) if fit_renders else run.fit(show_progress=False)
            results[prompt, seed] = (orbit_r_precision(run, prompt, candidates, clip), time.perf_counter() - tic)
            print(f"seed {seed} {prompt}: {results[prompt, seed][0]:.3f} in {results[prompt, seed][1]:.0f} s", flush=True)
    return results


def janus_sweep(prompts: list[str], seeds: list[int], overrides: dict, pipe=None, clip=None) -> list[dict]:
    """One record per prompt, seed and prompt style: is the back view (azimuth 180°) taken for a front?"""
    pipe, clip = pipe or load("toy-sd"), clip or load("toy-clip")
    records = []
    for prompt in prompts:
        for view_dependent in (True, False):
            for seed in seeds:
                tic = time.perf_counter()
                run = DreamFusion(pipe, prompt, DreamFusionConfig(**{**overrides, "seed": seed, "view_dependent": view_dependent}))
                run.fit(show_progress=False)
                back = run.render(15.0, 180.0, size=64, shading="lambertian")["rgb"]
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


def table(results: dict, prompts: list[str], seeds: list[int]) -> str:
    names = [p.split()[-1] for p in prompts]
    lines = ["| seed | " + " | ".join(names) + " | mean |", "|---" * (len(prompts) + 2) + "|"]
    for seed in seeds:
        scores = [results[p, seed][0] for p in prompts]
        lines.append(f"| {seed} | " + " | ".join(f"{s:.2f}" for s in scores) + f" | {sum(scores) / len(scores):.3f} |")
    overall = sum(r for r, _ in results.values()) / len(results)
    slowest = max(s for _, s in results.values())
    return "\n".join(lines) + f"\n\nmean over seeds: {overall:.3f}; slowest run {slowest:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", nargs="+", default=["a yellow duck", "a red torus", "a blue cube", "a green cone",
                                                         "an orange mushroom", "a purple snowman", "a pink mug",
                                                         "a brown house"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="DreamFusionConfig overrides, values as Python literals")
    parser.add_argument("--fit-renders", action="store_true", help="MSE to the toy world's renders instead of SDS")
    parser.add_argument("--janus", action="store_true", help="Janus backs with and without view-dependent prompts")
    parser.add_argument("--out", type=Path, help="write the records as JSON")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in DreamFusionConfig.__dataclass_fields__ or name in ("seed", "view_dependent"):
            raise SystemExit(f"--set: expected FIELD=VALUE with a DreamFusionConfig field other than seed and view_dependent, "
                             f"got {item!r}")
        overrides[name] = ast.literal_eval(value)
    if args.janus:
        records = janus_sweep(args.prompts, args.seeds, overrides)
        print(janus_table(records))
        saved = dict(overrides=overrides, records=records)
    else:
        results = sweep(args.prompts, args.seeds, overrides, args.fit_renders)
        print(table(results, args.prompts, args.seeds))
        saved = dict(overrides=overrides, fit_renders=args.fit_renders,
                     records=[dict(prompt=p, seed=s, r_precision=r, seconds=round(t, 1)) for (p, s), (r, t) in results.items()])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(saved, indent=1) + "\n")


if __name__ == "__main__":
    main()
