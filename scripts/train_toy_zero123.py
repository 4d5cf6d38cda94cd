"""Train toy-zero123 (Zero-1-to-3 on the toy world) from toy SD, score it on held-out objects, and publish it.

    .venv/bin/python scripts/train_toy_zero123.py                     # resumes from build/toy_zero123/checkpoint
    accelerate launch scripts/train_toy_zero123.py ...                # several processes or a GPU

As Zero-1-to-3 fine-tunes Stable Diffusion (through its image-variation model): the U-Net starts as
toy SD's, its 4 new input channels (the input view's latent) zero-initialised, and the camera
projection starts as the identity on the CLIP embedding. Pairs are two views of one toy-world object
(``caption_dataset``'s random orbit cameras); the VAE latents and CLIP image embeddings are computed
once, so a step costs one U-Net pass. Both conditions are dropped together with probability 0.1, for
classifier-free guidance. A share of pairs (``--same-view``) is a view with itself, whose answer is the input
latent: it teaches the short fine-tune to read that latent (chapter 07's pitfall). ``conv_in`` and the projection
train at ``--new-lr-factor`` times the rate, as Zero-1-to-3 trains its projection (worth little here). Unlike
Zero-1-to-3's plain ε-loss, each view's ε error is weighted by min(1/ᾱ_t, ``--max-weight``): the noisy steps
that set the view's layout count (chapter 07's other pitfall). At the end the script scores the EMA model on
held-out objects (seeds from 10000, never trained on) turned by 30°, 90° and 180°, saves the U-Net and projection in fp16
under ``minidiff3d/assets/toy_zero123`` with a model card, and enters them in the asset manifest.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from minidiff3d import assets, seed_everything
from minidiff3d.diffusion import check_max_weight, epsilon_loss_weights, weighted_mse
from minidiff3d.priors import caption_dataset, load
from minidiff3d.priors.clip import clip_pixels
from minidiff3d.priors.data import HELD_OUT_SEED
from minidiff3d.priors.toy_sd import SD_SCHEDULE
from minidiff3d.priors.toy_zero123 import assemble_zero123, image_encoder_from_clip
from minidiff3d.runtime import describe_machine
from minidiff3d.toyworld import CATEGORIES, COLORS, make_object
from minidiff3d.training import fit
from minidiff3d.validation import check_fraction, check_positive
from minidiff3d.zero123 import CAMERA_WIDTH, CCProjection, ViewConditionedUNet, novel_view_set, relative_camera, \
    score_novel_views, widen_conv_in

BUILD = assets.HERE.parent.parent / "build" / "toy_zero123"
DROP = 0.1  # both conditions zeroed together, as the unconditional branch of guidance sees them
NEW_LAYERS = ("unet.conv_in.", "cc_projection.")  # what Zero-1-to-3 adds to SD: the input channels, the projection


@torch.no_grad()
def encode(data: dict, sd, clip, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Unscaled VAE latents ``[M,4,16,16]`` (the posterior's mode) and CLIP image embeddings ``[M,D]`` of every render."""
    encoder = image_encoder_from_clip(clip)
    latents, embeds = [], []
    for images in data["images"].split(chunk):
        latents.append(sd.vae.encode(images * 2 - 1).latent_dist.mode())
        embeds.append(encoder(pixel_values=clip_pixels(images, encoder.config.image_size, clip.processor.image_mean,
                                                       clip.processor.image_std)).image_embeds)
    return torch.cat(latents), torch.cat(embeds)


def pair_loss(latents, embeds, elevations, azimuths, views_per_object: int, scaling: float, scheduler,
              max_weight: float = 1.0, same_view: float = 0.0):
    """The loss of one batch of target views, each paired with a random view of its own object (with probability
    ``same_view``, with itself: a turn of 0, whose answer is the input latent): each view's ε error weighted by
    min(1/ᾱ_t, ``max_weight``) (``diffusion.epsilon_loss_weights``; 1 is plain ε-loss)."""
    weights = epsilon_loss_weights(scheduler, max_weight)
    n_steps = scheduler.config.num_train_timesteps
    same_view = check_fraction("same_view", same_view)

    def loss_fn(model, batch):
        device, target = batch[0].device, batch[0].cpu()  # the indices address CPU tensors; the model's inputs move
        source = target // views_per_object * views_per_object + torch.randint(views_per_object, target.shape)
        if same_view:
            source = torch.where(torch.rand(target.shape) < same_view, target, source)
        camera = relative_camera(elevations[source], azimuths[source], elevations[target], azimuths[target])
        clean = latents[target] * scaling
        noise = torch.randn_like(clean)
        t = torch.randint(n_steps, target.shape)
        noisy = scheduler.add_noise(clean, noise, t)
        drop = torch.rand(target.shape) < DROP
        predicted = model(noisy.to(device), t.to(device), latents[source].to(device), embeds[source].to(device),
                          camera.to(device), drop.to(device))
        return weighted_mse(predicted, noise.to(device), weights[t])

    return loss_fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-weight", type=float, default=20.0,
                        help="cap of the loss weight 1/alpha-bar_t on the ε error (1: plain ε-loss)")
    parser.add_argument("--same-view", type=float, default=0.5,
                        help="share of pairs whose input is the target view itself (a turn of 0)")
    parser.add_argument("--new-lr-factor", type=float, default=10.0,
                        help="learning-rate factor of conv_in (which holds the zero-initialised input channels) and "
                             "the camera projection")
    parser.add_argument("--seeds", type=int, default=8, help="training objects per caption (object seeds 0..N-1)")
    parser.add_argument("--views", type=int, default=12, help="renders per training object")
    parser.add_argument("--held-out", type=int, default=1, help="held-out objects per caption, seeds from 10000")
    parser.add_argument("--eval-steps", type=int, default=50, help="DDIM steps of the held-out samples")
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--max-hours", type=float, default=None)
    parser.add_argument("--checkpoint-dir", type=Path, default=BUILD / "checkpoint")
    parser.add_argument("--no-publish", action="store_true", help="score, but leave the shipped prior alone")
    args = parser.parse_args()
    try:  # the loss's own rules, checked before the data is rendered and encoded
        check_max_weight(args.max_weight, "--max-weight")
        check_fraction("--same-view", args.same_view)
        check_positive("--new-lr-factor", args.new_lr_factor)
    except ValueError as error:
        parser.error(str(error))
    seed_everything(0)
    sd, clip = load("toy-sd", device="cpu"), load("toy-clip", device="cpu")
    data = caption_dataset(range(args.seeds), args.views)
    latents, embeds = encode(data, sd, clip)
    projection = CCProjection(embeds.shape[1] + CAMERA_WIDTH, sd.unet.config.cross_attention_dim).identity_init()
    denoiser = ViewConditionedUNet(widen_conv_in(sd.unet), projection)
    loss_fn = pair_loss(latents, embeds, data["elevations"], data["azimuths"], args.views, sd.vae.config.scaling_factor,
                        DDPMScheduler.from_config(SD_SCHEDULE), args.max_weight, args.same_view)
    result = fit(denoiser, (torch.arange(len(latents)),), loss_fn, steps=args.steps, batch_size=args.batch_size,
                 lr=args.lr, lr_schedule="cosine", ema_decay=0.999, log_every=50, checkpoint_dir=args.checkpoint_dir,
                 checkpoint_every=250, max_seconds=args.max_hours * 3600 if args.max_hours else None,
                 desc="toy-zero123", lr_multipliers=dict.fromkeys(NEW_LAYERS, args.new_lr_factor))
    history = result.history
    trained = result.model
    model = assemble_zero123(sd, clip, trained.unet, trained.cc_projection)

    held_out = [make_object(category, color, seed) for category in CATEGORIES for color in COLORS
                for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + args.held_out)]
    scores = score_novel_views(model, novel_view_set(held_out), args.eval_steps, args.guidance_scale)
    rows = {turn: {name: scores[turn][name] for name in ("zero123", "copy", "mirror")} for turn in (30.0, 90.0, 180.0)}
    table = "\n".join(f"| {turn:.0f}° | " + " | ".join(f"{row[name]['psnr']:.2f} / {row[name]['ssim']:.3f}"
                                                      for name in ("zero123", "copy", "mirror")) + " |"
                      for turn, row in rows.items())
    mean = {name: sum(row[name]["psnr"] for row in rows.values()) / len(rows) for name in ("zero123", "copy", "mirror")}
    print(table, "\nmean PSNR", mean)
    summary = {"steps": history["step"][-1], "minutes": history["seconds"][-1] / 60, "machine": describe_machine(),
               "final_loss": history["loss"][-1], "max_weight": args.max_weight, "scores": {str(k): v for k, v in rows.items()}, "mean_psnr": mean}
    args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    (args.checkpoint_dir / "training.json").write_text(json.dumps(summary, indent=2))
    if args.no_publish:
        return

    out = assets.HERE / "toy_zero123"
    trained.unet.to(torch.float16).save_pretrained(out / "unet")
    trained.cc_projection.to(torch.float16).save_pretrained(out / "cc_projection")
    digests = {part: assets.register(f"toy-zero123/{part}", out / part / "diffusion_pytorch_model.safetensors",
                                     f"toy-zero123's {part} (fp16), see toy_zero123/README.md")
               for part in ("unet", "cc_projection")}
    entries = assets.manifest()
    entries["toy-zero123/unet"].update(scores={"mean_psnr": mean["zero123"]}, steps=history["step"][-1])
    assets.MANIFEST.write_text(json.dumps(entries, indent=2) + "\n")
    count = {part: sum(p.numel() for p in getattr(trained, part).parameters()) for part in digests}
    card = f"""# toy-zero123 (minidiff3d)

Zero-1-to-3 for 64x64 toy-world images, built by `scripts/train_toy_zero123.py`. Only what differs from
toy SD and toy CLIP ships; `minidiff3d.priors.load("toy-zero123")` assembles a `minidiff3d.zero123.Zero123`:

| part | class | parameters | sha256 of the fp16 weights |
|---|---|---|---|
| unet | `UNet2DConditionModel` with 8 input channels (the noisy latent and the input view's unscaled latent), fine-tuned from toy SD's | {count['unet']:,} | `{digests['unet']}` |
| cc_projection | `CCProjection`: Linear({projection.config.in_channel} -> {projection.config.out_channel}), [CLIP image embedding, Δpolar, sin Δaz, cos Δaz, Δradius] | {count['cc_projection']:,} | `{digests['cc_projection']}` |
| vae, scheduler | toy SD's (not shipped again) | | |
| image_encoder | toy CLIP's vision tower and projection as a `CLIPVisionModelWithProjection` (not shipped again) | | |

- **Data:** pairs of views of one object from `caption_dataset(range({args.seeds}), {args.views})`: {len(latents)} renders of
  {len(latents) // args.views} objects (random orbit cameras, elevation -10 to 80 degrees); each step pairs every target view
  with a random view of the same object, or with probability {args.same_view:g} with itself (a turn of 0). Both conditions
  dropped together with probability {DROP}.
- **Start:** toy SD's U-Net with the 4 new input channels zero-initialised; the projection the identity on the embedding.
- **Training:** {history['step'][-1]} steps of batch {args.batch_size}, AdamW lr {args.lr} (cosine; {args.new_lr_factor:g}x for `conv_in` and the
  projection), EMA 0.999, ε-prediction on
  SD's schedule, the ε error weighted by min(1/ᾱ_t, {args.max_weight:g}); {history['seconds'][-1] / 60:.0f} min on {describe_machine()}; final loss {history['loss'][-1]:.4f};
  {date.today().isoformat()}.
- **Held-out quality:** {len(held_out)} objects (seeds {HELD_OUT_SEED}+, {args.held_out} per caption), input from elevation 15° and
  azimuth 0°, the view turned by Δazimuth at the same elevation; {args.eval_steps} DDIM steps, guidance {args.guidance_scale};
  PSNR (dB) / SSIM against the true render, mean over objects:

  | Δazimuth | toy-zero123 | input copied | input mirrored |
  |---|---|---|---|
{chr(10).join('  ' + line for line in table.splitlines())}

  Mean PSNR: toy-zero123 {mean['zero123']:.2f}, copied {mean['copy']:.2f}, mirrored {mean['mirror']:.2f}.
- **Reproduce:** `scripts/train_toy_zero123.py --steps {args.steps} --batch-size {args.batch_size} --lr {args.lr} --max-weight {args.max_weight:g} --same-view {args.same_view:g} --new-lr-factor {args.new_lr_factor:g} --seeds {args.seeds} --views {args.views}`.

Load with `minidiff3d.priors.load("toy-zero123")`.
"""
    (out / "README.md").write_text(card)
    print(card)


if __name__ == "__main__":
    main()
