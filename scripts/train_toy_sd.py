"""Train toy SD (a diffusers StableDiffusionPipeline) on captioned toy-world renders, and publish it.

    .venv/bin/python scripts/train_toy_sd.py vae  --steps 3000   # 1. the autoencoder
    .venv/bin/python scripts/train_toy_sd.py unet --steps 8000   # 2. the U-Net, on frozen latents
    accelerate launch scripts/train_toy_sd.py ...                # several processes or a GPU

The text encoder is toy CLIP's text tower, frozen (train it first: ``scripts/train_toy_clip.py``),
as Stable Diffusion uses a frozen CLIP text encoder. Each stage resumes from its checkpoint
folder. The VAE stage measures the latents' standard deviation and sets ``scaling_factor`` so
that scaled latents have unit variance, as SD's 0.18215 does. The U-Net stage assembles the
pipeline, measures R-precision of its samples under toy CLIP (25 DDIM steps, CFG 7.5), saves it
in fp16 under ``minidiff3d/assets/toy_sd`` with a model card, and enters each weight file in the
asset manifest.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel

from minidiff3d import assets, seed_everything
from minidiff3d.diffusion import train_denoiser
from minidiff3d.metrics import psnr, r_precision
from minidiff3d.priors import CLIP, assemble, caption_dataset, load, object_captions
from minidiff3d.priors.data import HELD_OUT_SEED
from minidiff3d.priors.toy_sd import SD_SCHEDULE, unet_config, vae_config
from minidiff3d.runtime import describe_machine
from minidiff3d.training import fit

BUILD = Path("build/toy_sd")
KL_WEIGHT = 1e-6  # SD's: the KL term only keeps the latents from drifting, reconstruction dominates


def train_vae(args, data: dict) -> None:
    vae = AutoencoderKL(**vae_config())

    def loss_fn(model, batch):
        x = batch[0]
        posterior = model.encode(x).latent_dist
        return F.mse_loss(model.decode(posterior.sample()).sample, x) + KL_WEIGHT * posterior.kl().mean()

    images = data["images"] * 2 - 1
    result = fit(vae, (images,), loss_fn, steps=args.steps, batch_size=args.batch_size, lr=args.lr, lr_schedule="cosine",
                 ema_decay=None, log_every=50, checkpoint_dir=args.checkpoint_dir or BUILD / "vae_checkpoint",
                 max_seconds=args.max_hours * 3600 if args.max_hours else None, desc="toy-sd vae")
    vae = result.model
    with torch.no_grad():
        latents = torch.cat([vae.encode(chunk).latent_dist.sample() for chunk in images[::4].split(256)])
        vae.register_to_config(scaling_factor=round(1.0 / latents.std().item(), 5))
        held_out = caption_dataset(range(HELD_OUT_SEED, HELD_OUT_SEED + 1), 8)["images"]
        recon = torch.cat([vae.decode(vae.encode(c * 2 - 1).latent_dist.mode()).sample for c in held_out.split(256)])
        recon_psnr = psnr((recon.clamp(-1, 1) + 1) / 2, held_out).item()
    vae.save_pretrained(BUILD / "vae")
    summary = {"steps": result.history["step"][-1], "minutes": result.history["seconds"][-1] / 60,
               "machine": describe_machine(), "final_loss": result.history["loss"][-1],
               "scaling_factor": vae.config.scaling_factor, "held_out_psnr": recon_psnr}
    (BUILD / "vae" / "training.json").write_text(json.dumps(summary, indent=2))
    print(summary)


def text_encoder_from_clip(clip: CLIP) -> CLIPTextModel:
    """Toy CLIP's text tower as a standalone ``CLIPTextModel``, the class SD's pipelines expect."""
    text_encoder = CLIPTextModel(clip.model.config.text_config)
    text_encoder.load_state_dict(clip.model.text_model.state_dict())
    return text_encoder.eval()


def frozen_text_encoder(clip: CLIP) -> tuple[CLIPTextModel, str]:
    """The text encoder the U-Net trains against, and the sha256 of the toy CLIP it came from.

    Kept with the checkpoints: a resumed run must see the same text encoder even if toy CLIP has
    been retrained since.
    """
    folder = BUILD / "text_encoder"
    if not (folder / "config.json").exists():
        text_encoder_from_clip(clip).save_pretrained(folder)
        (folder / "source.json").write_text(json.dumps({"toy-clip": assets.manifest()["toy-clip"]["sha256"]}))
    source = json.loads((folder / "source.json").read_text())["toy-clip"]
    return CLIPTextModel.from_pretrained(folder, dtype=torch.float32).eval(), source


def train_unet(args, data: dict) -> None:
    vae = AutoencoderKL.from_pretrained(BUILD / "vae").eval()
    clip = load("toy-clip", device="cpu")  # the judge, and the first run's text encoder
    text_encoder, clip_digest = frozen_text_encoder(clip)
    tokenizer = clip.tokenizer
    vae_summary = json.loads((BUILD / "vae" / "training.json").read_text())

    with torch.no_grad():
        images = data["images"] * 2 - 1
        latents = torch.cat([vae.encode(c).latent_dist.mode() for c in images.split(256)]) * vae.config.scaling_factor
        # Every render twice: once captioned with its view, once without, so the model knows both
        # "a red duck" and "a red duck, back view". The last text is "", CFG's unconditional prompt.
        texts = sorted(set(data["captions"]) | set(data["object_captions"])) + [""]
        index = {text: i for i, text in enumerate(texts)}
        labels = torch.tensor([index[c] for c in data["captions"]] + [index[c] for c in data["object_captions"]])
        tokens = tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")
        text_states = text_encoder(tokens.input_ids).last_hidden_state
    latents = torch.cat([latents, latents])

    unet = UNet2DConditionModel(**unet_config(text_encoder.config.hidden_size, channels=tuple(args.unet_channels)))
    scheduler = DDPMScheduler.from_config(SD_SCHEDULE)
    result = train_denoiser(unet, latents, scheduler, labels, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            lr_schedule="cosine", log_every=50, checkpoint_dir=args.checkpoint_dir or BUILD / "unet_checkpoint",
                            checkpoint_every=250, max_seconds=args.max_hours * 3600 if args.max_hours else None,
                            label_embeddings=text_states, null_label=len(texts) - 1)
    pipe = assemble(vae, text_encoder, tokenizer, result.model)
    pipe.set_progress_bar_config(disable=True)

    captions = object_captions()
    prompts = captions * args.eval_samples
    with torch.no_grad():
        samples = torch.cat([pipe(chunk, num_inference_steps=25, guidance_scale=7.5, output_type="pt",
                                  generator=torch.Generator().manual_seed(i)).images
                             for i, chunk in enumerate([prompts[j:j + 80] for j in range(0, len(prompts), 80)])])
    score = r_precision(samples.clamp(0, 1), prompts, captions, clip)
    print(f"R-precision of {len(prompts)} samples (25 DDIM steps, CFG 7.5): {score:.4f}")

    out = assets.HERE / "toy_sd"
    pipe.to(torch.float16).save_pretrained(out)
    digests = {part: assets.register(f"toy-sd/{part}", out / part / name, f"toy SD's {part} (fp16), see toy_sd/README.md")
               for part, name in [("unet", "diffusion_pytorch_model.safetensors"),
                                  ("vae", "diffusion_pytorch_model.safetensors"), ("text_encoder", "model.safetensors")]}
    entries = assets.manifest()
    entries["toy-sd/unet"].update(scores={"r_precision": score}, steps=result.history["step"][-1])
    assets.MANIFEST.write_text(json.dumps(entries, indent=2) + "\n")
    count = {part: sum(p.numel() for p in getattr(pipe, part).parameters()) for part in digests}
    history = result.history
    card = f"""# toy-sd (minidiff3d)

A diffusers `StableDiffusionPipeline` for 64x64 toy-world images, built by `scripts/train_toy_sd.py`:

| part | class | parameters | sha256 of the fp16 weights |
|---|---|---|---|
| vae | `AutoencoderKL`, 64x64x3 <-> 16x16x4, scaling factor {vae.config.scaling_factor} | {count['vae']:,} | `{digests['vae']}` |
| text_encoder | `CLIPTextModel`: the text tower of the toy CLIP shipped at the time (sha256 {clip_digest[:12]}...), frozen | {count['text_encoder']:,} | `{digests['text_encoder']}` |
| unet | `UNet2DConditionModel`, channels {tuple(args.unet_channels)} | {count['unet']:,} | `{digests['unet']}` |
| tokenizer | `CLIPTokenizer` over the toy vocabulary | | |
| scheduler | `DDIMScheduler` on SD's schedule (scaled linear betas 0.00085 to 0.012, ε-prediction) | | |

- **Data:** `caption_dataset(range({args.seeds}), {args.views})`: {len(data['images'])} renders of the {len(captions)} toy captions
  (random orbit cameras, elevation -10 to 80 degrees), each used twice: with its view suffix
  (", front view" / ", side view" / ", back view" / ", overhead view"; thresholds in `minidiff3d.priors.captions`)
  and without. Caption dropout 0.1 to the empty prompt, for classifier-free guidance.
- **VAE:** {vae_summary['steps']} steps, MSE + {KL_WEIGHT} KL, {vae_summary['minutes']:.0f} min on {vae_summary['machine']};
  held-out reconstruction PSNR {vae_summary['held_out_psnr']:.2f} dB.
- **U-Net:** {history['step'][-1]} steps of batch {args.batch_size} on frozen latents (the posterior mode), AdamW lr {args.lr}
  (cosine), EMA 0.999; {history['seconds'][-1] / 60:.0f} min on {describe_machine()}; final loss {history['loss'][-1]:.4f};
  {date.today().isoformat()}.
- **Sample quality:** R-precision {score:.4f} under toy CLIP over {len(prompts)} samples ({args.eval_samples} per caption,
  candidates the {len(captions)} captions), 25 DDIM steps, CFG 7.5.
- **Reproduce:** `scripts/train_toy_sd.py vae` then `scripts/train_toy_sd.py unet` with the numbers above.

Load with `minidiff3d.priors.load("toy-sd")`.
"""
    (out / "README.md").write_text(card)
    print(card)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("vae", "unet"))
    parser.add_argument("--steps", type=int, default=None, help="default: 3000 (vae), 8000 (unet)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 16 (vae), 32 (unet)")
    parser.add_argument("--lr", type=float, default=None, help="default: 5e-4 (vae), 5e-4 (unet)")
    parser.add_argument("--seeds", type=int, default=4, help="training objects per caption")
    parser.add_argument("--views", type=int, default=24, help="renders per training object")
    parser.add_argument("--unet-channels", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--eval-samples", type=int, default=2, help="samples per caption for R-precision")
    parser.add_argument("--max-hours", type=float, default=None)
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    args = parser.parse_args()
    defaults = {"vae": (3000, 16, 5e-4), "unet": (8000, 32, 5e-4)}[args.stage]
    args.steps, args.batch_size, args.lr = (given if given is not None else default for given, default in
                                            zip((args.steps, args.batch_size, args.lr), defaults))
    seed_everything(0)
    data = caption_dataset(range(args.seeds), args.views)
    (train_vae if args.stage == "vae" else train_unet)(args, data)


if __name__ == "__main__":
    main()
