"""``minidiff3d``: the command line. ``generate`` runs any method's preset; ``methods`` lists them; ``doctor`` checks the install.

    minidiff3d generate "a red mug" --method dreamfusion --seed 0 --out runs/red-mug
    minidiff3d generate --config runs/red-mug/run.json --out runs/red-mug-again     # the same run again
    minidiff3d generate "a red mug" --out runs/red-mug --set guidance.guidance_scale=15 system.steps=300
    MINIDIFF3D_QUICK=1 minidiff3d generate "a red mug" --out runs/quick              # the chapters' quick step counts
    minidiff3d generate "a yellow duck" --method mvdream --out runs/duck-mv          # multi-view SDS (toy-mvdream)
    minidiff3d generate --image duck.png --method zero123 --out runs/duck            # image-to-3D (a caption, if given,
                                                                                    # is only what it is scored against)
    minidiff3d generate "a blue cone" --method dreamgaussian --out runs/cone         # Gaussians, then a textured mesh
    minidiff3d generate --image duck.png --method dreamgaussian --out runs/duck-dg   # the same from an image (toy-zero123)

A run's folder gets ``mesh.glb``, ``turntable.gif``, ``checkpoint.pt`` and ``run.json`` (the full config,
seed, package version, machine, time, and the turntable's R-precision under toy CLIP). Ctrl-C
stops after the current step, saves the checkpoint and marks ``run.json`` interrupted; ``--resume``
continues it to the same result as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import signal
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .config import override, parse_assignment, to_dict
from .runtime import describe_machine, quick_mode


RUN_FILES = ("mesh.glb", "turntable.gif", "checkpoint.pt", "run.json")  # what a run's folder gets


class UsageError(Exception):
    """Bad input on the command line: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minidiff3d", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="a 3-D object from a prompt: mesh.glb, turntable.gif, run.json")
    generate.add_argument("prompt", nargs="?", help="the text prompt (optional with --config, which holds one); "
                          "with --image, the object's caption for scoring")
    generate.add_argument("--image", type=Path, help="the input image of an image-to-3D method (zero123, one2345, "
                          "dreamgaussian)")
    generate.add_argument("--method", help="a preset (see `minidiff3d methods`); default dreamfusion, or the --config's")
    generate.add_argument("--seed", type=int, help="the run's seed (default 0, or the --config's)")
    generate.add_argument("--out", type=Path, required=True, help="the run's folder")
    generate.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, values as JSON")
    generate.add_argument("--config", type=Path, help="a run.json (or a config's JSON) to start from")
    generate.add_argument("--pretrained", help="the prior's folder or hub id: a StableDiffusionPipeline; for mvdream a "
                          "folder in the MVDream diffusers ports' layout (its own cameras unless "
                          "guidance.camera_convention is set); for image methods a Zero-1-to-3 checkpoint in diffusers' "
                          "layout (default: the shipped toy prior)")
    generate.add_argument("--device", choices=("cpu", "cuda"), help="default: CUDA when available")
    generate.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    generate.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    commands.add_parser("methods", help="the presets, one line each")
    commands.add_parser("doctor", help="versions, device, cache folder, shipped assets verified")
    return parser


def _read_json(name: str, path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"{name}: expected a readable JSON file, got {path} ({error})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{name}: expected a JSON object, got {type(data).__name__}")
    return data


def build_config(args):
    """The run's ``RunConfig``: a --config's (else the preset with quick mode's step counts), then --set, then the
    prompt, --image and --seed, which win over a --set of the same key."""
    from .systems import PRESETS, load_run_config, run_config

    overrides = dict(parse_assignment(item) for item in args.set)
    if args.seed is not None:
        overrides["system.seed"] = args.seed
    if args.prompt is not None:
        overrides["prompt.text"] = args.prompt
    if args.image is not None:
        overrides["prompt.image"] = str(args.image)
    if args.config is not None:
        data = _read_json("--config", args.config)
        base = data.get("config", data)  # a run.json holds its config under "config"
        if args.method is not None:
            base = {**base, "method": args.method}
        config = load_run_config(base)
    else:
        method = args.method or "dreamfusion"
        if method not in PRESETS:
            raise UsageError(f"--method: unknown method {method!r}; expected one of {', '.join(sorted(PRESETS))}")
        if args.image is not None and PRESETS[method].image_method:  # e.g. dreamgaussian from an image
            method = PRESETS[method].image_method
        config = run_config(method, quick=quick_mode())
    takes_image = hasattr(config.prompt, "image")
    if args.image is not None and not takes_image:
        raise UsageError(f"--image: method {config.method!r} takes a text prompt; the image-to-3D methods are "
                         f"{', '.join(m for m, p in PRESETS.items() if hasattr(p.config().prompt, 'image'))}")
    if args.pretrained and PRESETS[config.method].prior == "toy-mvdream":  # the released MVDream's cameras, unless set
        overrides = {"guidance.camera_convention": "mvdream", **overrides}
    config = override(config, overrides)
    if takes_image and not config.prompt.image:
        raise UsageError(f"--image: method {config.method!r} needs an input image, got none")
    if not takes_image and not config.prompt.text.strip():
        raise UsageError("prompt: expected a text prompt (or a --config that holds one), got none")
    return config


def _load_pipe(method: str, pretrained: str | None, device: str | None):
    """The prior ``method`` distils: its shipped toy prior, or ``pretrained`` (a folder, or a hub id; a folder only
    for mvdream)."""
    from .priors import load, load_stable_diffusion
    from .systems import PRESETS
    from .zero123 import Zero123

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device: cuda was asked for, but torch sees no CUDA device")
    prior = PRESETS[method].prior
    if pretrained is None:
        return load(prior, device)
    local = Path(pretrained).exists()
    if prior == "toy-zero123":
        return Zero123.from_pretrained(pretrained, device, local_files_only=local)
    if prior == "toy-mvdream":
        from .mvdream_port import load_mvdream

        if not local:
            raise UsageError(f"--pretrained: expected a local folder in the layout of the MVDream diffusers ports for "
                             f"method 'mvdream', got {pretrained!r}")
        return load_mvdream(pretrained, device)
    return load_stable_diffusion(pretrained, device, local_files_only=local)


def _turntable_r_precision(run, prompt: str) -> tuple[float | None, str]:
    """R-precision of the turntable's lit views under toy CLIP, or None with the reason when it cannot apply."""
    from .priors import load, object_captions
    from .systems import orbit_r_precision

    candidates = object_captions()
    if prompt not in candidates:
        return None, ("the prompt is not one of the toy world's captions, which toy CLIP ranks" if prompt else
                      "no caption was given to score against")
    return orbit_r_precision(run, prompt, candidates, load("toy-clip")), "toy CLIP, 8 lit views at elevation 15°, 80 captions"


def _write(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)  # atomic: a kill never leaves half a run.json


class _Interrupted(Exception):
    pass


@contextlib.contextmanager
def _stop_between_steps():
    """Ctrl-C asks the run to stop after the step it is in, so that the checkpoint holds whole steps only (a second
    Ctrl-C stops at once, without a checkpoint). Yields the callback that ``System.fit`` calls after each step."""
    asked = []

    def on_interrupt(signum, frame):
        if asked:
            raise KeyboardInterrupt
        asked.append(True)

    def callback(run, info):
        if asked:
            raise _Interrupted

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield callback
    finally:
        signal.signal(signal.SIGINT, previous)


def generate(args) -> int:
    out: Path = args.out
    record_path, checkpoint_path = out / "run.json", out / "checkpoint.pt"
    earlier = _read_json("--out", record_path) if record_path.exists() else None
    if args.resume:
        if earlier is None or not checkpoint_path.exists():
            raise UsageError(f"--resume: expected an interrupted run in {out} (run.json and checkpoint.pt), found none")
        if earlier.get("status") != "interrupted":
            raise UsageError(f"--resume: the run in {out} is {earlier.get('status')!r}, not 'interrupted'")
        changes = [name for name, value in (("prompt", args.prompt), ("--image", args.image), ("--method", args.method),
                                            ("--seed", args.seed), ("--set", args.set), ("--config", args.config))
                   if value not in (None, [])]
        if changes:
            raise UsageError(f"--resume: expected no {', '.join(changes)}; the run continues with its own settings "
                             f"(run.json), to the result the uninterrupted run gives")
        from .systems import PRESETS, load_run_config

        config = load_run_config(earlier["config"])
        recorded = earlier.get("pretrained")
        recorded = None if recorded == PRESETS[config.method].prior else recorded
        if args.pretrained not in (None, recorded):
            raise UsageError(f"--pretrained: the run in {out} was started on {recorded or 'the shipped prior'}; "
                             f"--resume continues it on that prior, got {args.pretrained!r}")
        args.pretrained = recorded
    else:
        if earlier is not None and not args.overwrite:
            raise UsageError(f"--out: {out} holds an earlier run (run.json); pass --overwrite to replace it")
        config = build_config(args)
    from .systems import PRESETS

    pipe = _load_pipe(config.method, args.pretrained, args.device)
    run = config.build(pipe)
    out.mkdir(parents=True, exist_ok=True)  # only once the run is built: a setting that cannot run leaves nothing
    if earlier is not None and not args.resume:  # --overwrite: none of the earlier run's files may pass for this one's
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    if args.resume:
        run.load_state_dict(torch.load(checkpoint_path, weights_only=False))
    record = dict(config=to_dict(config), seed=config.system.seed, version=__version__, command=" ".join(sys.argv),
                  machine=describe_machine(), device=str(pipe.device), python=platform.python_version(),
                  torch=torch.__version__, quick=quick_mode(), pretrained=args.pretrained or PRESETS[config.method].prior,
                  started=(earlier or {}).get("started") if args.resume else datetime.datetime.now().isoformat(timespec="seconds"),
                  status="running")
    _write(record_path, record)
    try:
        return _finish(run, config, record, out)
    finally:
        run.close()


def _finish(run, config, record: dict, out: Path) -> int:
    """Fit what remains of the run, then export and score it; Ctrl-C leaves a checkpoint and an interrupted record."""
    from .images import save_gif

    record_path, checkpoint_path = out / "run.json", out / "checkpoint.pt"
    try:
        with _stop_between_steps() as stop:
            run.fit(callback=stop)  # the steps that remain: all of them, or what an interrupted run left
    except _Interrupted:
        torch.save(run.state_dict(), checkpoint_path)
        record.update(status="interrupted", steps_done=run.step_count, seconds=round(run.history["seconds"][-1], 1)
                      if run.history["seconds"] else 0.0)
        _write(record_path, record)
        print(f"\ninterrupted at step {run.step_count} of {run.total_steps}; checkpoint saved. Continue with:\n"
              f"  minidiff3d generate --out {out} --resume", file=sys.stderr)
        return 130
    torch.save(run.state_dict(), checkpoint_path)
    try:
        run.export_mesh(out / "mesh.glb")
        mesh_note = None
    except ValueError as error:  # e.g. a run too short to carve any surface at the export's density level
        mesh_note = f"no mesh.glb: {error}"
        print(f"warning: {mesh_note}", file=sys.stderr)
    save_gif(run.turntable(24, size=64, shading="lambertian"), out / "turntable.gif", scale=2)
    score, how = _turntable_r_precision(run, config.prompt.text)
    record.update(status="complete", steps_done=run.step_count, seconds=round(run.history["seconds"][-1], 1),
                  r_precision=score, r_precision_note=how, mesh_note=mesh_note,
                  files=[f for f in RUN_FILES if (out / f).exists()])
    _write(record_path, record)
    print(f"{config.prompt.text or getattr(config.prompt, 'image', '')!r}: {run.step_count} steps in {record['seconds']:.0f} s; R-precision "
          f"{'n/a' if score is None else format(score, '.2f')} -> {out}")
    return 0


def methods(args) -> int:
    from .systems import PRESETS

    width = max(map(len, PRESETS))
    for name, preset in PRESETS.items():
        print(f"{name:<{width}}  {preset.description}")
    return 0


def doctor(args) -> int:
    import diffusers
    import transformers

    from . import assets
    from .runtime import get_device
    from .toyworld.data import cache_dir

    print(f"minidiff3d {__version__}, python {platform.python_version()}, torch {torch.__version__}, "
          f"diffusers {diffusers.__version__}, transformers {transformers.__version__}")
    print(f"device: {get_device()} ({describe_machine()})")
    print(f"toy-world cache: {cache_dir()}")
    checks = assets.verify()
    bad = [name for name, ok in checks.items() if not ok]
    print(f"shipped assets: {len(checks) - len(bad)} of {len(checks)} match the manifest's sha256"
          + (f"; failing: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"generate": generate, "methods": methods, "doctor": doctor}[args.command](args)
    except (UsageError, ValueError, ImportError) as error:  # ImportError: an optional package a setting needs
        print(f"minidiff3d {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
