"""Any text-to-3D method over prompts and seeds, scored as chapter 04 scores it: the results files the chapters cite.

    python scripts/sweep.py --seeds 0 1 2 3 4                                          # DreamFusion, the defaults
    python scripts/sweep.py --method dreamfusion --set guidance.guidance_scale=15 system.lambda_sparsity=0.1
    python scripts/sweep.py --prompts "a pink mug" --fit-renders                      # the control, below
    python scripts/sweep.py --prompts "a yellow duck" --janus --seeds 0 1 2 3 4 5 6 7 8 9 --set system.steps=200 \
        --out notebooks/results/04_janus.json                                         # chapter 04's pitfall: blobs
    python scripts/sweep.py --janus --methods dreamfusion mvdream --prompts "a yellow duck" "a pink mug" \
        "a purple snowman" --seeds 0 1 2 3 4 5 6 7 --out notebooks/results/08_janus.json     # chapter 08's
    python scripts/sweep.py --janus --methods dreamfusion mvdream --prompts "a yellow duck" \
        --seeds 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 --out notebooks/results/08_janus_duck.json

Each run is ``run_config(method, prompt, overrides).build(pipe)`` with the seed set, so a
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

``--janus`` runs each prompt and seed with and without view-dependent prompts (a method whose prompt
is plain, MVDream, as its preset is), renders each result from behind (opposite the view toy CLIP most
takes for its front, of eight lit views at elevation 15°: ``systems.back_view``), and records whether
toy CLIP takes that back for a front view too (``metrics.janus_rate``), and the run's R-precision.
``--methods`` puts several text-to-3D methods in one file; the runs of a method and prompt are fitted
side by side, one core each.

Each record also holds the sharpness of the eight views (``metrics.laplacian_energy``) and the
exported mesh's statistics (faces, pieces before and after dropping specks, watertight). A
coarse-to-fine method (Magic3D) records its coarse stage's scores and seconds as well, under
``"coarse"``. ``--eval-every N`` scores R-precision every N steps into ``"curve"`` ([step, seconds,
R-precision]): the time a method takes to reach a given score. Seconds never count the scoring.

``--out`` writes the records as JSON with the command, the machine, the date and the package version,
after every run (``"complete": false`` until the last), and each run's front view beside it
(``FILE.fronts.pt``, ``[3,64,64]`` uint8 per prompt and seed), from which the diversity is computed.
A sweep stopped part-way (a score sweep or a Janus sweep) continues with ``--resume``: the runs already
in the file are kept, if the file's method and overrides are the ones asked for.

Each method runs on its preset's prior (``minidiff3d methods``); ``--mvdream-unet FOLDER`` puts a toy-mvdream
U-Net that ``train_toy_mvdream.py --no-publish`` saved in place of the shipped one (chapter 08's world-camera
measurement, ``notebooks/results/08_world_cameras.json``; a U-Net trained on world cameras must be told them,
``--set guidance.camera_convention=mvdream``). The file records the folder, and ``--resume`` checks it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import torch

import minidiff3d
from minidiff3d.config import parse_assignment
from minidiff3d.images import to_channels_first
from minidiff3d.metrics import clip_diversity, janus_rate, laplacian_energy, r_precision, saturation
from minidiff3d.priors import load, object_captions
from minidiff3d.priors.toy_mvdream import load_toy_mvdream
from minidiff3d.runtime import describe_machine
from minidiff3d.systems import PRESETS, CoarseToFine, System, back_view, fit_parallel, orbit_r_precision, run_config
from minidiff3d.toyworld import make_object, render as toy_render

EVAL_ELEVATION, FRONT_AZIMUTH = 15.0, 30.0


def build(pipe, method: str, prompt: str, seed: int, overrides: dict, **more) -> System:
    return run_config(method, prompt, {**overrides, "system.seed": seed, **more}).build(pipe)


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


def mesh_stats(run, min_piece: float = 0.05) -> dict | None:
    """The exported mesh: faces, pieces (all, and those kept: at least ``min_piece`` of the largest), watertight."""
    try:
        pieces = run.export_mesh(min_piece=0.0).split(only_watertight=False)
    except ValueError:  # no surface at the export level
        return None
    largest = max(len(piece.faces) for piece in pieces)
    kept = [piece for piece in pieces if len(piece.faces) >= min_piece * largest]
    return dict(faces=sum(len(p.faces) for p in kept), pieces=len(kept), raw_pieces=len(pieces),
                watertight=all(p.is_watertight for p in kept))


def evaluate(run, prompt: str, candidates: list[str], clip) -> dict:
    """R-precision, saturation and sharpness of the eight lit views, the mesh's statistics, and the front view."""
    ring = torch.full((8,), EVAL_ELEVATION), torch.arange(8) * 45.0
    views = run.render(*ring, size=64, shading="lambertian")["rgb"]
    scores = dict(r_precision=orbit_r_precision(run, prompt, candidates, clip), saturation=round(saturation(views), 4),
                  sharpness=round(laplacian_energy(views), 5), mesh=mesh_stats(run),
                  front=as_stored(run.render(EVAL_ELEVATION, FRONT_AZIMUTH, size=64, shading="lambertian")["rgb"]))
    if hasattr(run, "render_mesh"):  # a textured mesh of its own (DreamGaussian's stage 2): scored as well
        scores["mesh_r_precision"] = r_precision(run.render_mesh(*ring, size=64), [prompt] * 8, candidates, clip)
    return scores


def fit_scored(run, score, eval_every: int | None = None) -> dict:
    """Fit ``run``: its ``seconds`` (less the scoring), the R-precision ``curve`` every ``eval_every`` steps, and for a
    ``CoarseToFine`` the coarse stage's ``score(run)`` with its seconds."""
    tic, scoring, curve, out = time.perf_counter(), [0.0], [], {}

    def elapsed() -> float:
        return time.perf_counter() - tic - scoring[0]

    def scored(fn):
        seconds, start = elapsed(), time.perf_counter()
        value = fn()
        scoring[0] += time.perf_counter() - start
        return seconds, value

    def callback(system, info):
        if eval_every and run.step_count % eval_every == 0:
            seconds, value = scored(lambda: score(run)["r_precision"])
            curve.append([run.step_count, round(seconds, 1), value])

    if isinstance(run, CoarseToFine):
        run.fit(run.coarse.total_steps, callback=callback, show_progress=False)
        seconds, coarse = scored(lambda: score(run))
        out["coarse"] = {**coarse, "seconds": round(seconds, 1)}
    run.fit(callback=callback, show_progress=False)
    out["seconds"] = round(elapsed(), 1)
    if eval_every:
        out["curve"] = curve
    return out


def sweep(prompts: list[str], seeds: list[int], overrides: dict, method: str = "dreamfusion", fit_renders: bool = False,
          pipe=None, clip=None, done: list[dict] = (), on_record=None, eval_every: int | None = None) -> list[dict]:
    """One record per prompt and seed: ``evaluate``'s scores, seconds, and what ``fit_scored`` adds. ``pipe`` None:
    the method's preset prior.

    Runs whose (prompt, seed) is among the records ``done`` are not run again; ``on_record(records)``
    is called after each new run with every record so far.
    """
    pipe, clip = pipe or load(PRESETS[method].prior), clip or load("toy-clip")
    candidates, records = object_captions(), list(done)
    finished = {(r["prompt"], r["seed"]) for r in records}
    for seed in seeds:
        for prompt in prompts:
            if (prompt, seed) in finished:
                continue
            tic = time.perf_counter()
            run = build(pipe, method, prompt, seed, overrides)
            score = lambda run: evaluate(run, prompt, candidates, clip)  # noqa: E731
            if fit_renders:
                fit_to_renders(run)
                fitted = dict(seconds=round(time.perf_counter() - tic, 1))
            else:
                fitted = fit_scored(run, score, eval_every)
            records.append(dict(prompt=prompt, seed=seed, **score(run), **fitted))
            run.close()
            print(f"seed {seed} {prompt}: R-precision {records[-1]['r_precision']:.3f} in {records[-1]['seconds']:.0f} s",
                  flush=True)
            if on_record is not None:
                on_record(records)
    order = {(p, s): i for i, (s, p) in enumerate((s, p) for s in seeds for p in prompts)}
    return sorted((r for r in records if (r["prompt"], r["seed"]) in order), key=lambda r: order[r["prompt"], r["seed"]])


def diversity(records: list[dict], clip) -> dict[str, float]:
    """Per prompt with at least two seeds: the CLIP diversity of its front views across seeds."""
    fronts: dict[str, list] = {}
    for r in records:
        fronts.setdefault(r["prompt"], []).append(r["front"])
    return {p: round(clip_diversity(torch.cat(views), clip), 4) for p, views in fronts.items() if len(views) > 1}


def janus_sweep(prompts: list[str], seeds: list[int], overrides: dict, methods=("dreamfusion",), pipes=None, clip=None,
                on_record=None, done: list[dict] = ()) -> list[dict]:
    """One record per method, prompt style, prompt and seed: is the back view (``back_view``) taken for a front?

    A method whose preset prompt is view-dependent (DreamFusion) runs with and without view words; one
    whose prompt is plain (MVDream, whose cameras say the side) runs as its preset is. The runs of one
    method and prompt are fitted side by side, one core each (``systems.fit_parallel``).
    ``on_record(records)`` is called after each prompt with every record so far; runs among the records ``done``
    are not run again.
    """
    clip, records = clip or load("toy-clip"), list(done)
    finished = {(r["method"], r["prompt"], r["seed"], r["view_dependent"]) for r in records}
    for method in methods:
        pipe = (pipes or {}).get(method) or load(PRESETS[method].prior)
        styles = (True, False) if run_config(method, "a red duck").prompt.view_dependent else (False,)
        for prompt in prompts:
            grid = [(view_dependent, seed) for view_dependent in styles for seed in seeds
                    if (method, prompt, seed, view_dependent) not in finished]
            if not grid:
                continue
            configs = [run_config(method, prompt, {**overrides, "system.seed": seed, "prompt.view_dependent": style})
                       for style, seed in grid]
            for (view_dependent, seed), run in zip(grid, fit_parallel(configs, pipe)):
                back = back_view(run, prompt, clip, elevation=EVAL_ELEVATION)
                records.append(dict(method=method, prompt=prompt, seed=seed, view_dependent=view_dependent,
                                    janus=janus_rate(back, prompt, clip) == 1.0,
                                    r_precision=orbit_r_precision(run, prompt, object_captions(), clip),
                                    seconds=round(run.history["seconds"][-1], 1)))
                run.close()
                print(json.dumps(records[-1]), flush=True)
            if on_record is not None:
                on_record(records)
    return records


def janus_table(records: list[dict]) -> str:
    """Janus backs per method, prompt style and prompt, as 'k of n', with the mean R-precision of those runs."""
    lines = ["| method | prompt | Janus backs | R-precision |", "|---|---|---|---|"]
    for method, view_dependent in dict.fromkeys((r["method"], r["view_dependent"]) for r in records):
        name = f"{method}{', view prompts' if view_dependent else ''}"
        for prompt in dict.fromkeys(r["prompt"] for r in records):
            runs = [r for r in records if (r["method"], r["view_dependent"], r["prompt"]) == (method, view_dependent, prompt)]
            if runs:
                lines.append(f"| {name} | {prompt} | {sum(r['janus'] for r in runs)} of {len(runs)} | "
                             f"{sum(r['r_precision'] for r in runs) / len(runs):.3f} |")
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
    parser.add_argument("--janus", action="store_true", help="Janus backs with and without view-dependent prompts "
                        "(the plain prompt only for a method whose preset has it: mvdream)")
    parser.add_argument("--methods", nargs="+", choices=sorted(PRESETS), help="--janus: several methods, in one file")
    parser.add_argument("--eval-every", type=int, metavar="N", help="score R-precision every N steps (the record's curve)")
    parser.add_argument("--out", type=Path, help="write the records as JSON (and the front views beside it)")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --out and run the rest")
    parser.add_argument("--mvdream-unet", type=Path, metavar="FOLDER",
                        help="method mvdream: the U-Net that train_toy_mvdream.py --no-publish saved (FOLDER/unet), "
                             "in place of the shipped toy-mvdream's (one trained with --cameras mvdream also needs "
                             "--set guidance.camera_convention=mvdream)")
    args = parser.parse_args(argv)
    try:
        overrides = dict(parse_assignment(item) for item in args.set)
        for key in ("system.seed", "prompt.text", "prompt.view_dependent", "method"):
            if key in overrides:
                raise ValueError(f"--set {key}: set by the sweep itself (--seeds, --prompts, --janus)")
        if args.methods and not args.janus:
            raise ValueError("--methods: only with --janus (a score sweep takes one --method)")
        for flag, value in (("--fit-renders", args.fit_renders), ("--eval-every", args.eval_every)):
            if args.janus and value:
                raise ValueError(f"{flag}: only without --janus (a Janus sweep scores the backs, once, at the end)")
        for method in args.methods or [args.method]:
            if hasattr(run_config(method, "a red duck", overrides).prompt, "image"):  # checked before the first run
                raise ValueError(f"--method {method}: takes an input image; the sweep runs text prompts")
        if args.resume and args.out is None:
            raise ValueError("--resume: needs --out")
        if args.mvdream_unet and "mvdream" not in (args.methods or [args.method]):
            raise ValueError(f"--mvdream-unet: only with the method mvdream, got {args.methods or args.method}")
        if args.mvdream_unet and not (args.mvdream_unet / "unet").is_dir():
            raise ValueError(f"--mvdream-unet: expected a folder holding unet/, got {args.mvdream_unet}")
    except ValueError as error:
        raise SystemExit(f"sweep: {error}")
    clip = load("toy-clip")
    pipes = {"mvdream": load_toy_mvdream(args.mvdream_unet, load("toy-sd"))} if args.mvdream_unet else {}
    given = sys.argv[1:] if argv is None else argv
    saved = dict(command="python scripts/sweep.py " + shlex.join(a for a in given if a != "--resume"),  # what made the file
                 machine=describe_machine(), date=datetime.date.today().isoformat(), version=minidiff3d.__version__,
                 method=args.method, overrides=overrides,
                 mvdream_unet=str(args.mvdream_unet) if args.mvdream_unet else None)
    if args.janus:
        methods = args.methods or [args.method]
        saved.update(method=methods)
        try:
            done = resumed_janus(args.out, saved) if args.resume else []
        except ValueError as error:
            raise SystemExit(f"sweep: {error}")
        records = janus_sweep(args.prompts, args.seeds, overrides, methods, pipes=pipes, clip=clip, done=done,
                              on_record=lambda records: write_results(args.out, {**saved, "complete": False,
                                                                                 "records": records}))
        print(janus_table(records))
        write_results(args.out, {**saved, "complete": True, "records": records})
        return
    saved.update(fit_renders=args.fit_renders, eval_every=args.eval_every)
    try:
        done = resumed_records(args.out, saved) if args.resume else []
    except ValueError as error:
        raise SystemExit(f"sweep: {error}")

    def save(records: list[dict], complete: bool = False) -> dict[str, float]:
        diversities = diversity(records, clip)
        write_results(args.out, {**saved, "complete": complete, "diversity": diversities,
                                 "records": [without_fronts(r) for r in records]},
                      {f"{r['prompt']}|{r['seed']}": to_uint8(r["front"]) for r in records})
        return diversities

    records = sweep(args.prompts, args.seeds, overrides, args.method, args.fit_renders, pipe=pipes.get(args.method),
                    clip=clip, done=done, on_record=save if args.out else None, eval_every=args.eval_every)
    diversities = save(records, complete=True) if args.out else diversity(records, clip)
    print(table(records, args.prompts, args.seeds, diversities))


def without_fronts(record: dict) -> dict:
    """The record as JSON holds it: the front views (the run's, and the coarse stage's) are stored beside the file."""
    out = {k: v for k, v in record.items() if k != "front"}
    if "coarse" in out:
        out["coarse"] = without_fronts(out["coarse"])
    return out


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``[1,3,H,W]`` in [0,1] -> ``[3,H,W]`` uint8, as the front views are stored."""
    return (images[0].clamp(0, 1) * 255).round().to(torch.uint8)


def from_uint8(image: torch.Tensor) -> torch.Tensor:
    """A stored ``[3,H,W]`` uint8 front view -> ``[1,3,H,W]`` in [0,1]."""
    return image[None].float() / 255


def as_stored(images: torch.Tensor) -> torch.Tensor:
    """The front view rounded as it is stored, so a resumed sweep's diversity is the uninterrupted one's."""
    return from_uint8(to_uint8(images))


def fronts_path(out: Path) -> Path:
    return out.with_suffix(".fronts.pt")


def write_results(out: Path | None, saved: dict, fronts: dict | None = None) -> None:
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    if fronts is not None:
        torch.save(fronts, fronts_path(out))
    out.write_text(json.dumps(saved, indent=1) + "\n")


def resumed_janus(out: Path, asked: dict) -> list[dict]:
    """The records of an earlier Janus sweep in ``out``, if it ran the methods and overrides asked for now."""
    if not out.exists():
        return []
    previous = json.loads(out.read_text())
    for key in ("method", "overrides", "mvdream_unet"):
        if previous.get(key) != asked[key]:
            raise ValueError(f"--resume: {out} has {key}={previous.get(key)!r}, this sweep asks for {asked[key]!r}")
    return previous["records"]


def resumed_records(out: Path, asked: dict) -> list[dict]:
    """The records of an earlier sweep in ``out``, each with its front view ``[1,3,64,64]``, if it ran what is asked now."""
    if not out.exists():
        return []
    previous = json.loads(out.read_text())
    for key in ("method", "overrides", "mvdream_unet", "fit_renders", "eval_every"):
        if previous.get(key) != asked[key]:
            raise ValueError(f"--resume: {out} has {key}={previous.get(key)!r}, this sweep asks for {asked[key]!r}")
    fronts = torch.load(fronts_path(out))
    return [{**r, "front": from_uint8(fronts[f"{r['prompt']}|{r['seed']}"])} for r in previous["records"]]


if __name__ == "__main__":
    main()
