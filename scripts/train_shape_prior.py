"""Train a shipped 3-D denoiser (chapter 02's point clouds or chapter 03's SDF grids) and publish it.

    .venv/bin/python scripts/train_shape_prior.py point-cloud --steps 9000 --max-hours 2.5
    .venv/bin/python scripts/train_shape_prior.py sdf --steps 4000 --max-hours 1
    accelerate launch scripts/train_shape_prior.py ...        # several processes or a GPU

Training resumes from ``--checkpoint-dir`` if it holds a checkpoint, so a long CPU run can be
stopped and restarted (``--max-hours`` counts the earlier runs too). At the end the EMA weights
are evaluated against held-out shapes (object seeds from 10000, never trained on), saved in fp16
with ``save_pretrained`` under ``minidiff3d/assets/`` with the scheduler and a model card, and
entered in the asset manifest with their sha256.
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from minidiff3d import assets, seed_everything
from minidiff3d.diffusion import PointCloudTransformer, SDFUNet3D, sample, train_denoiser
from minidiff3d.mesh import meshes_from_sdf_grids
from minidiff3d.metrics import evaluate_meshes, evaluate_point_clouds
from minidiff3d.runtime import describe_machine
from minidiff3d.toyworld import CATEGORIES, point_cloud_dataset, sdf_dataset

HELD_OUT_SEED = 10_000


def point_cloud_task(args):
    """Data, model, and a held-out evaluation of samples ``[B,N,3]``."""
    data, labels = point_cloud_dataset(args.n_per_category, args.points)
    model = PointCloudTransformer(num_classes=len(CATEGORIES), hidden_dim=args.hidden_dim, num_layers=args.layers,
                                  coordinate_scale=args.coordinate_scale)
    describe = (f"`point_cloud_dataset({args.n_per_category}, {args.points})`: surface clouds in [-1,1]^3 at their "
                f"true sizes, times {args.coordinate_scale} (`PointCloudTransformer.encode_points`)")
    if args.init_from:
        start = PointCloudTransformer.from_pretrained(args.init_from, torch_dtype=torch.float32, local_files_only=True)
        model.load_state_dict(start.state_dict())
        with torch.no_grad():  # the first layer sees points in the new units as it saw them in the old
            model.input.weight *= start.config.coordinate_scale / args.coordinate_scale
        describe += f"; started from the weights of a model trained at coordinate scale {start.config.coordinate_scale}"

    def evaluate(samples, refs):
        return evaluate_point_clouds(model.decode_points(samples), refs, metrics=("CD",))

    # The clouds lie in [-1,1]^3 before scaling: clip x0 estimates to the scaled box.
    return (model.encode_points(data), labels, model, describe, (args.eval_points, 3), evaluate,
            dict(clip_sample_range=args.coordinate_scale))


def sdf_task(args):
    """Data (TSDF divided by the truncation, then centred), model, and an evaluation of the meshes they give."""
    grids, labels = sdf_dataset(args.n_per_category, args.resolution, truncation=args.truncation)
    offset = round((grids / args.truncation).mean().item(), 2)
    model = SDFUNet3D(base_channels=args.base_channels, channel_mults=(1, 2, 4), num_classes=len(CATEGORIES),
                      patch_size=args.patch_size, truncation=args.truncation, offset=offset)
    describe = (f"`sdf_dataset({args.n_per_category}, {args.resolution}, truncation={args.truncation})`, divided by "
                f"the truncation and centred by the training mean, offset {offset} (`SDFUNet3D.encode_sdf`)")

    def evaluate(samples, refs):
        return evaluate_meshes(meshes_from_sdf_grids(model.decode_sdf(samples), fill_interior=True, seal_gaps=0), refs)

    # A 32^3 grid averages its noise over 32768 voxels, so under the linear schedule its coarse
    # layout is still visible at t = 999, and a model trained so never learns to make it from pure
    # noise. Rescaling the schedule to zero terminal SNR (Lin et al.) fixes that; it needs
    # v-prediction and "trailing" timesteps. The centred values lie in [-1 - offset, 1 - offset]:
    # clip x0 estimates to that, not to ±1.
    schedule = dict(rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing",
                    clip_sample_range=1.0 + abs(offset))
    return (model.encode_sdf(grids), labels, model, describe, (1, args.resolution, args.resolution, args.resolution),
            evaluate, schedule)


TASKS = {"point-cloud": ("point-cloud-diffusion", point_cloud_task), "sdf": ("sdf-diffusion", sdf_task)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=tuple(TASKS))
    parser.add_argument("--steps", type=int, default=9000)
    parser.add_argument("--max-hours", type=float, default=None,
                        help="stop once training has taken this long in all, counting earlier resumed runs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine")
    parser.add_argument("--n-per-category", type=int, default=64, help="training shapes per category")
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="default: build/checkpoints/<task>")
    parser.add_argument("--eval-per-category", type=int, default=16, help="held-out shapes (and samples) per category")
    parser.add_argument("--eval-points", type=int, default=1024, help="points per held-out cloud")
    point_cloud = parser.add_argument_group("point-cloud")
    point_cloud.add_argument("--points", type=int, default=1024)
    point_cloud.add_argument("--hidden-dim", type=int, default=96)
    point_cloud.add_argument("--layers", type=int, default=4)
    point_cloud.add_argument("--init-from", type=Path, default=None,
                             help="start from this saved model's weights (same architecture; any coordinate scale)")
    point_cloud.add_argument("--coordinate-scale", type=float, default=3.0,
                             help="the model denoises points times this (3 brings the toy clouds to unit std)")
    sdf = parser.add_argument_group("sdf")
    sdf.add_argument("--resolution", type=int, default=32)
    sdf.add_argument("--truncation", type=float, default=0.2)
    sdf.add_argument("--base-channels", type=int, default=32)
    sdf.add_argument("--patch-size", type=int, default=2)
    args = parser.parse_args()
    seed_everything(0)
    name, make_task = TASKS[args.task]
    out = assets.HERE / name.replace("-", "_")
    checkpoint_dir = args.checkpoint_dir or Path("build/checkpoints") / args.task.replace("-", "_")

    data, labels, model, describe, shape, evaluate, scheduler_options = make_task(args)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                              **scheduler_options)
    tic = time.perf_counter()
    result = train_denoiser(model, data, scheduler, labels, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            lr_schedule=args.lr_schedule, log_every=100, checkpoint_dir=checkpoint_dir, checkpoint_every=500,
                            max_seconds=args.max_hours * 3600 if args.max_hours else None)
    model = result.model

    refs, ref_labels = point_cloud_dataset(args.eval_per_category, args.eval_points, first_seed=HELD_OUT_SEED)
    ddim = DDIMScheduler.from_config(scheduler.config)
    samples = torch.cat([sample(model, ddim, (len(chunk), *shape), chunk, num_inference_steps=50,
                                generator=torch.Generator().manual_seed(i)).cpu()
                         for i, chunk in enumerate(ref_labels.split(64))])
    scores = evaluate(samples, refs)

    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(out)
    scheduler.save_pretrained(out)
    weights = out / "diffusion_pytorch_model.safetensors"
    history = result.history
    digest = assets.register(name, weights, f"{args.task} diffusion model (fp16), see its README.md", scores=scores,
                             steps=history["step"][-1])
    n_params = sum(p.numel() for p in model.parameters())
    card = f"""# {name} (minidiff3d)

A `{type(model).__name__}` with {n_params:,} parameters, config in `config.json`.

- **Data:** {describe}; {len(data)} shapes, {args.n_per_category} object seeds (0 to {args.n_per_category - 1}) of each
  of the {len(CATEGORIES)} categories ({", ".join(CATEGORIES)}).
- **Objective:** {scheduler.config.prediction_type}; DDPM linear betas 1e-4 to 0.02 over 1000 steps{", rescaled to zero terminal SNR" if scheduler.config.rescale_betas_zero_snr else ""};
  class dropout 0.1 (for CFG); EMA 0.999.
- **Training:** {history['step'][-1]} steps of batch {args.batch_size}, AdamW lr {args.lr} ({args.lr_schedule}), wall time
  {history['seconds'][-1] / 60:.0f} min on {describe_machine()},
  final loss {history['loss'][-1]:.4f}; {date.today().isoformat()}.
- **Held-out quality:** {len(refs)} shapes with object seeds from {HELD_OUT_SEED}, {args.eval_points}-point surface clouds,
  one sample per reference label, DDIM 50 steps, no guidance:
  {", ".join(f"{k} {v:.4f}" for k, v in scores.items())}.
- **Weights:** fp16 safetensors, sha256 `{digest}`.
- **Reproduce:** `scripts/train_shape_prior.py {args.task}` with the numbers above.

Load with `minidiff3d.diffusion.load_shipped_denoiser("{name}")`.
"""
    (out / "README.md").write_text(card)
    print(card)
    print(f"total {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
