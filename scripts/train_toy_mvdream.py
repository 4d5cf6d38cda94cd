"""Train toy-mvdream (MVDream on the toy world) from toy SD, score it on held-out captions, and publish it.

    .venv/bin/python scripts/train_toy_mvdream.py                     # resumes from build/toy_mvdream/checkpoint
    accelerate launch scripts/train_toy_mvdream.py ...                # several processes or a GPU

As MVDream fine-tunes Stable Diffusion: the U-Net starts as toy SD's, with a camera MLP added to the
timestep embedding (last layer zero-initialised, so step 0 is toy SD) and joint self-attention over
the four views of a set (``minidiff3d.mvdream``). Data: sets of 4 orthogonal renders of one object
at one random elevation (``multiview_dataset``), captioned with the plain caption ("a red duck"),
the cameras relative to the first view (``--cameras mvdream``: world cameras in the released
MVDream's axes instead, a measured alternative). A share of the steps (``--single-share``, MVDream's 30%)
trains on single images with toy SD's own captions (with and without the view word), per-view
attention and a zero camera, so the model keeps what toy SD knew. The text is dropped to "" with
probability 0.1 (per set), for classifier-free guidance; the cameras never are.

The captions of ``MULTIVIEW_HELD_OUT`` (chapter 04's eight prompts) are never seen as sets. At the
end the script samples 4-view sets of them and scores per-view R-precision under toy CLIP and view
consistency (do toy CLIP's view words match the cameras, for the set's best turn?), against four independent toy SD
samples with view prompts, saves the U-Net in fp16 under ``minidiff3d/assets/toy_mvdream`` with a
model card, and enters it in the asset manifest.
"""

from __future__ import annotations

import argparse
import copy
import json
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler

from minidiff3d import assets, seed_everything
from minidiff3d.diffusion import check_max_weight, epsilon_loss_weights, weighted_mse
from minidiff3d.metrics import r_precision, view_consistency
from minidiff3d.mvdream import CAMERA_CONVENTIONS, CAMERA_WIDTH, camera_inputs, denoising_loss, independent_views, \
    multiview_unet, ring_azimuths, sample_views, set_views
from minidiff3d.priors import caption_dataset, load, object_captions
from minidiff3d.priors.data import MULTIVIEW_HELD_OUT, multiview_dataset
from minidiff3d.priors.toy_mvdream import assemble_mvdream
from minidiff3d.priors.toy_sd import SD_SCHEDULE
from minidiff3d.runtime import describe_machine
from minidiff3d.training import fit

BUILD = assets.HERE.parent.parent / "build" / "toy_mvdream"
DROP = 0.1  # the text dropped to "", as the unconditional branch of guidance sees it


@torch.no_grad()
def encode(images: torch.Tensor, sd, chunk: int = 256) -> torch.Tensor:
    """Scaled VAE latents (the posterior's mode) ``[M,4,16,16]`` of ``images [M,3,64,64]``."""
    return torch.cat([sd.vae.encode(c * 2 - 1).latent_dist.mode() for c in images.split(chunk)]) * sd.vae.config.scaling_factor


@torch.no_grad()
def text_table(sd, texts: list[str]) -> tuple[torch.Tensor, dict[str, int]]:
    """Every distinct text's embedding ``[T,L,D]`` (the last is "") and each text's row."""
    texts = sorted(set(texts) - {""}) + [""]
    return sd.encode_prompt(texts, "cpu", 1, False)[0], {text: i for i, text in enumerate(texts)}


def set_loss(unet, sets: dict, single: dict, embeddings, scheduler, single_share: float, max_weight: float = 1.0):
    """The loss of one batch: B multi-view sets (V views denoised together at one t), or, with probability
    ``single_share``, B·V single images of toy SD's data, per-view attention, zero cameras. Each view's ε error
    is weighted by min(1/ᾱ_t, ``max_weight``) (``diffusion.epsilon_loss_weights``; 1 is plain ε-loss)."""
    weights = epsilon_loss_weights(scheduler, max_weight)
    n_steps, views = scheduler.config.num_train_timesteps, sets["latents"].shape[1]

    def loss_fn(model, batch):
        chosen = batch[0].cpu()  # indexes the CPU tensors; the model's inputs move to its device below
        if torch.rand(()) < single_share:
            rows = torch.randint(len(single["latents"]), (len(chosen) * views,))
            clean, text, group = single["latents"][rows], single["text"][rows], 1
            cameras = torch.zeros(len(rows), CAMERA_WIDTH)
            t = torch.randint(n_steps, (len(rows),))
        else:
            clean, group = sets["latents"][chosen].flatten(0, 1), views
            text = sets["text"][chosen].repeat_interleave(views)
            cameras = sets["cameras"][chosen].flatten(0, 1)
            t = torch.randint(n_steps, (len(chosen),)).repeat_interleave(views)
        dropped = torch.rand(len(text) // group) < DROP
        text = torch.where(dropped.repeat_interleave(group), len(embeddings) - 1, text)
        noise = torch.randn_like(clean)
        set_views(unet, group)
        device = next(model.parameters()).device
        predicted = model(scheduler.add_noise(clean, noise, t).to(device), t.to(device), embeddings[text].to(device),
                          class_labels=cameras.to(device)).sample
        return weighted_mse(predicted, noise.to(device), weights[t])

    return loss_fn


def score(pipe, sd, clip, prompts: list[str], samples: int, steps: int, guidance: float, cameras: str) -> dict:
    """toy-mvdream's sets against toy SD's independent views with view prompts, on ``prompts`` (``samples`` each)."""
    prompts = [p for p in prompts for _ in range(samples)]
    out = {}
    samplers = {"toy-mvdream": (pipe, partial(sample_views, cameras=cameras)),
                "toy-sd, view prompts": (sd, independent_views)}
    for name, (model, draw) in samplers.items():
        sets = draw(model, prompts, 15.0, 0.0, 4, steps, guidance, torch.Generator().manual_seed(0))
        per_view = [p for p in prompts for _ in range(4)]
        out[name] = {"r_precision": r_precision(sets.flatten(0, 1), per_view, object_captions(), clip),
                     "view_consistency": view_consistency(sets, prompts, 15.0, ring_azimuths(4), clip)}
    return out


def camera_ablation(pipe, convention: str) -> dict:
    """Does the model read its cameras? The held-out denoising loss (``mvdream.denoising_loss``, mean over its
    noise levels) with each view's true camera, with zeros, and with every camera turned 180° (the back's camera
    on the front). A model that ignores its cameras scores the three alike."""
    held = multiview_dataset(object_seeds=range(100, 102), sets_per_object=1, captions=list(MULTIVIEW_HELD_OUT))
    elevations = held["elevations"][:, None]
    true = camera_inputs(elevations, held["azimuths"], convention)
    told = {"true cameras": true, "zeroed": torch.zeros_like(true),
            "turned 180°": camera_inputs(elevations, held["azimuths"] + 180.0, convention)}
    return {name: float(np.mean(list(denoising_loss(pipe, held["images"], held["object_captions"], cams).values())))
            for name, cams in told.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=8, help="sets of 4 views per step")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, default=8, help="training objects per caption (object seeds 0..N-1)")
    parser.add_argument("--sets", type=int, default=2, help="4-view sets per training object")
    parser.add_argument("--cameras", choices=tuple(CAMERA_CONVENTIONS), default="relative",
                        help="each view's camera as the model is told it: relative to the first view (the shipped "
                        "prior), or world cameras in the released MVDream's axes (mvdream)")
    parser.add_argument("--single-share", type=float, default=0.3, help="share of steps on single images")
    parser.add_argument("--max-weight", type=float, default=1.0,
                        help="cap of the loss weight 1/alpha-bar_t on the ε error (1: plain ε-loss, the shipped prior's)")
    parser.add_argument("--eval-samples", type=int, default=4, help="4-view sets per held-out caption")
    parser.add_argument("--eval-steps", type=int, default=25, help="DDIM steps of the held-out samples")
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--max-hours", type=float, default=None)
    parser.add_argument("--checkpoint-dir", type=Path, default=BUILD / "checkpoint")
    parser.add_argument("--no-publish", action="store_true",
                        help="score, and save the U-Net beside the checkpoint (load_toy_mvdream loads that folder), "
                        "leaving the shipped prior alone")
    args = parser.parse_args()
    try:  # the loss's own rule, checked before the data is rendered and encoded
        check_max_weight(args.max_weight, "--max-weight")
    except ValueError as error:
        parser.error(str(error))
    if args.cameras != "relative" and not args.no_publish:  # the loaders and the mvdream preset tell it relative ones
        parser.error(f"--cameras {args.cameras}: the shipped prior is told relative cameras; add --no-publish")
    seed_everything(0)
    sd, clip = load("toy-sd", device="cpu"), load("toy-clip", device="cpu")

    trained_captions = [c for c in object_captions() if c not in MULTIVIEW_HELD_OUT]
    data = multiview_dataset(range(args.seeds), args.sets, captions=trained_captions)
    single_data = caption_dataset(range(8), 12)  # toy SD's kind of data (rendered for toy-zero123 already)
    single_texts = single_data["captions"] + single_data["object_captions"]
    embeddings, row = text_table(sd, data["object_captions"] + single_texts)
    single_latents = encode(single_data["images"], sd)
    sets = {"latents": encode(data["images"].flatten(0, 1), sd).unflatten(0, data["images"].shape[:2]),
            "text": torch.tensor([row[c] for c in data["object_captions"]]),
            "cameras": camera_inputs(data["elevations"][:, None], data["azimuths"], args.cameras)}
    single = {"latents": torch.cat([single_latents, single_latents]), "text": torch.tensor([row[c] for c in single_texts])}

    unet = multiview_unet(copy.deepcopy(sd.unet))
    loss_fn = set_loss(unet, sets, single, embeddings, DDPMScheduler.from_config(SD_SCHEDULE), args.single_share,
                      args.max_weight)
    result = fit(unet, (torch.arange(len(sets["latents"])),), loss_fn, steps=args.steps, batch_size=args.batch_size,
                 lr=args.lr, lr_schedule="cosine", ema_decay=0.999, log_every=50, checkpoint_dir=args.checkpoint_dir,
                 checkpoint_every=250, max_seconds=args.max_hours * 3600 if args.max_hours else None,
                 desc="toy-mvdream")
    history = result.history
    pipe = assemble_mvdream(sd, result.model)

    ablation = camera_ablation(pipe, args.cameras)
    scores = score(pipe, sd, clip, list(MULTIVIEW_HELD_OUT), args.eval_samples, args.eval_steps, args.guidance_scale,
                   args.cameras)
    print(json.dumps({"held-out denoising loss": ablation, **scores}, indent=2))
    summary = {"steps": history["step"][-1], "minutes": history["seconds"][-1] / 60, "machine": describe_machine(),
               "cameras": args.cameras, "final_loss": history["loss"][-1], "max_weight": args.max_weight, "camera_ablation": ablation,
               "scores": scores}
    args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    (args.checkpoint_dir / "training.json").write_text(json.dumps(summary, indent=2))
    if args.no_publish:
        pipe.unet.to(torch.float16).save_pretrained(args.checkpoint_dir / "unet")
        return

    out = assets.HERE / "toy_mvdream"
    pipe.unet.to(torch.float16).save_pretrained(out / "unet")
    digest = assets.register("toy-mvdream/unet", out / "unet" / "diffusion_pytorch_model.safetensors",
                             "toy-mvdream's multi-view U-Net (fp16), see toy_mvdream/README.md")
    entries = assets.manifest()
    entries["toy-mvdream/unet"].update(scores=scores["toy-mvdream"], steps=history["step"][-1])
    assets.MANIFEST.write_text(json.dumps(entries, indent=2) + "\n")
    count = sum(p.numel() for p in pipe.unet.parameters())
    camera_count = sum(p.numel() for p in pipe.unet.class_embedding.parameters())
    rows = "\n".join(f"  | {name} | {s['r_precision']:.3f} | {s['view_consistency']:.3f} |" for name, s in scores.items())
    card = f"""# toy-mvdream (minidiff3d)

MVDream for 64x64 toy-world images, built by `scripts/train_toy_mvdream.py`. Only the U-Net ships;
`minidiff3d.priors.load("toy-mvdream")` assembles a `StableDiffusionPipeline` of toy SD's VAE, text
encoder, tokenizer and scheduler around it, with joint multi-view self-attention installed
(`minidiff3d.mvdream`; the processors carry no weights). Sample 4-view sets with `mvdream.sample_views`.

| part | class | parameters | sha256 of the fp16 weights |
|---|---|---|---|
| unet | `UNet2DConditionModel` fine-tuned from toy SD's, with `class_embed_type="projection"`: the camera (flattened 4x4, 16 values) through Linear-SiLU-Linear ({camera_count:,} parameters), added to the timestep embedding | {count:,} | `{digest}` |
| vae, text_encoder, tokenizer, scheduler | toy SD's (not shipped again) | | |

- **Data:** {len(sets['latents'])} sets of 4 orthogonal views (azimuths 90° apart from a random start, one random
  elevation in -10 to 80 degrees per set) from `multiview_dataset(range({args.seeds}), {args.sets})` over the {len(trained_captions)}
  captions not held out, captioned without a view word, cameras relative to the first view; and, on
  {args.single_share:.0%} of the steps, single images of `caption_dataset(range(8), 12)` with toy SD's captions (with and
  without the view word), per-view attention and a zero camera. Text dropped with probability {DROP}.
- **Held out:** {', '.join(MULTIVIEW_HELD_OUT)}: never seen as sets (toy SD knew them as single images).
- **Start:** toy SD's U-Net; the camera MLP's last layer zero-initialised.
- **Training:** {history['step'][-1]} steps of {args.batch_size} sets (or {args.batch_size * 4} single images), AdamW lr {args.lr}
  (cosine), EMA 0.999, ε-prediction on SD's schedule{f', the ε error weighted by min(1/ᾱ_t, {args.max_weight:g})' if args.max_weight > 1 else ''}; {history['seconds'][-1] / 60:.0f} min on {describe_machine()};
  final loss {history['loss'][-1]:.4f}; {date.today().isoformat()}.
- **Held-out quality:** {args.eval_samples} sets per held-out caption at elevation 15°, azimuths 0/90/180/270,
  {args.eval_steps} DDIM steps, guidance {args.guidance_scale}; per-view R-precision under toy CLIP (80 candidates) and view
  consistency (`metrics.view_consistency`: toy CLIP's view word, of front/side/back/overhead, is the camera's, for
  the set's best turn of the four, since the cameras are relative to the first view); and whether it reads its
  cameras, by its held-out denoising loss (`mvdream.denoising_loss`, mean over five noise levels, 2 sets per
  held-out caption) with the true cameras {ablation['true cameras']:.4f}, zeroed {ablation['zeroed']:.4f},
  turned 180° {ablation['turned 180°']:.4f}:

  | sampler | R-precision | view consistency |
  |---|---|---|
{rows}
- **Reproduce:** `scripts/train_toy_mvdream.py --steps {args.steps} --batch-size {args.batch_size} --lr {args.lr} --seeds {args.seeds} --sets {args.sets} --single-share {args.single_share}{f' --max-weight {args.max_weight:g}' if args.max_weight > 1 else ''}`.

Load with `minidiff3d.priors.load("toy-mvdream")`.
"""
    (out / "README.md").write_text(card)
    print(card)


if __name__ == "__main__":
    main()
