"""Train the shipped point-cloud diffusion model (chapter 02) and write its model card.

    .venv/bin/python scripts/train_point_cloud_prior.py --steps 20000 --max-hours 2
    accelerate launch scripts/train_point_cloud_prior.py ...       # several processes or a GPU

Training resumes from ``--checkpoint-dir`` if it holds a checkpoint, so a long CPU run can be
stopped and restarted. At the end the EMA weights are saved in fp16 with ``save_pretrained``
into ``minidiff3d/assets/point_cloud_diffusion/`` together with the scheduler, evaluated against
held-out shapes, and entered in the asset manifest with their sha256.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from minidiff3d import assets, get_device, seed_everything
from minidiff3d.diffusion import PointCloudTransformer, sample, train_denoiser
from minidiff3d.metrics import evaluate_point_clouds
from minidiff3d.toyworld import CATEGORIES, point_cloud_dataset

NAME = "point-cloud-diffusion"
OUT = assets.HERE / "point_cloud_diffusion"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--max-hours", type=float, default=None, help="stop training after this long")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-per-category", type=int, default=64, help="training shapes per category")
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("build/checkpoints/point_cloud"))
    parser.add_argument("--eval-per-category", type=int, default=16, help="held-out shapes (and samples) per category")
    args = parser.parse_args()
    seed_everything(0)

    points, labels = point_cloud_dataset(args.n_per_category, args.points)
    model = PointCloudTransformer(num_classes=len(CATEGORIES), hidden_dim=args.hidden_dim, num_layers=args.layers)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    tic = time.perf_counter()
    result = train_denoiser(model, points, scheduler, labels, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            max_seconds=args.max_hours * 3600 if args.max_hours else None, log_every=100,
                            checkpoint_dir=args.checkpoint_dir, checkpoint_every=500)
    model = result.model

    # Quality against held-out shapes (seeds never used in training), one DDIM run of 50 steps.
    refs, ref_labels = point_cloud_dataset(args.eval_per_category, args.points, first_seed=10_000)
    samples = torch.cat([sample(model, DDIMScheduler.from_config(scheduler.config), (len(chunk), args.points, 3), chunk,
                                guidance_scale=1.0, num_inference_steps=50, generator=torch.Generator().manual_seed(i))
                         for i, chunk in enumerate(ref_labels.split(64))])
    scores = evaluate_point_clouds(samples.cpu(), refs, metrics=("CD",))

    OUT.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(OUT)
    scheduler.save_pretrained(OUT)
    weights = OUT / "diffusion_pytorch_model.safetensors"
    digest = assets.sha256(weights)
    history = result.history
    card = f"""# point-cloud-diffusion (minidiff3d, chapter 02)

A `PointCloudTransformer` (set transformer with adaLN-Zero timestep and class conditioning;
{args.layers} blocks {args.hidden_dim} wide, {sum(p.numel() for p in model.parameters()):,} parameters)
trained to denoise {args.points}-point surface clouds of the toy world.

- **Data:** `point_cloud_dataset({args.n_per_category}, {args.points})`: {len(points)} shapes,
  {args.n_per_category} seeds of each of the {len(CATEGORIES)} categories ({", ".join(CATEGORIES)}).
- **Objective:** ε-prediction, DDPM linear betas 1e-4 to 0.02 over 1000 steps, class dropout 0.1, EMA 0.999.
- **Training:** {history['step'][-1]} steps of batch {args.batch_size}, AdamW lr {args.lr}, wall time
  {history['seconds'][-1] / 60:.0f} min on {platform.machine()} ({get_device()}, {torch.get_num_threads()} threads),
  final loss {history['loss'][-1]:.4f}; {date.today().isoformat()}.
- **Held-out quality** ({len(refs)} shapes with seeds from 10000, one sample per reference label,
  DDIM 50 steps, no guidance): {", ".join(f"{k} {v:.4f}" for k, v in scores.items())}.
- **Weights:** fp16 safetensors, sha256 `{digest}`.

Load with `minidiff3d.diffusion.load_point_cloud_prior()`.
"""
    (OUT / "README.md").write_text(card)
    entries = assets.manifest()
    entries[NAME] = {"file": str(weights.relative_to(assets.HERE)), "sha256": digest,
                     "description": "chapter 02's point-cloud diffusion model (fp16)", "scores": scores,
                     "steps": history["step"][-1]}
    assets.MANIFEST.write_text(json.dumps(entries, indent=2) + "\n")
    print(card)
    print(f"total {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
