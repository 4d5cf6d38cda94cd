"""Zero-1-to-3: a new view of an object from one picture of it and the camera's move.

Zero-1-to-3 fine-tunes a latent-diffusion U-Net to denoise the target view given two conditions:

* **the input view's latent, concatenated on the channels**: the U-Net takes 8 channels, the noisy
  target latent and the input's VAE latent (the posterior's mode, *unscaled*, as the released
  model was trained: its pipeline does not multiply by the VAE's scaling factor);
* **one cross-attention token**: the input's CLIP image embedding joined with the relative camera
  ``[Δpolar, sin Δazimuth, cos Δazimuth, Δradius]`` and projected back to the embedding's width by
  one linear layer, ``cc_projection`` (772 -> 768 in the real model).

The azimuth enters as its sine and cosine, so a turn of 350° is the turn of -10° it is; the source
chapter's azimuth/180 puts them at opposite ends of its range. Angles follow ``cameras.orbit_camera``,
which is Zero-1-to-3's convention too: polar angle from +z (90° - elevation) and azimuth
counterclockwise about +z, in radians. Classifier-free guidance drops both conditions to zeros.

``Zero123`` holds the parts in the layout of diffusers' community pipeline (``vae``,
``image_encoder``, ``unet``, ``cc_projection``, ``scheduler``), so ``Zero123.from_pretrained`` reads a
real checkpoint in that layout and the toy prior alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

from .cameras import orbit_camera
from .diffusion.sampling import CFG_FORMS, classifier_free_guidance, epsilon_from_output, forward_process
from .metrics import psnr, ssim
from .priors.clip import clip_pixels
from .runtime import get_device, quiet_loading
from .toyworld import DEFAULT_FOV_DEG, DEFAULT_RADIUS, render
from .validation import check_broadcast, check_choice, check_fraction, check_images, check_non_negative, check_positive_int, check_tensor

CAMERA_WIDTH = 4  # [Δpolar, sin Δazimuth, cos Δazimuth, Δradius]


def relative_camera(elevation_in, azimuth_in, elevation_out, azimuth_out, radius_in=0.0, radius_out=0.0
                    ) -> torch.Tensor:
    """Zero-1-to-3's camera ``[B,4]`` for the move from the input view to the target view.

    Angles in degrees, as ``orbit_camera`` takes them (numbers or ``[B]``): Δpolar is the change in
    the polar angle (90° - elevation) in radians, so looking from higher up is negative; Δradius is
    the change in distance (0 in the toy world, whose cameras keep one radius).
    """
    values = [torch.as_tensor(v, dtype=torch.float32) for v in
              (elevation_in, azimuth_in, elevation_out, azimuth_out, radius_in, radius_out)]
    names = ("elevation_in", "azimuth_in", "elevation_out", "azimuth_out", "radius_in", "radius_out")
    for name, value in zip(names, values):
        if value.dim() > 1 or not torch.isfinite(value).all():
            raise ValueError(f"{name}: expected finite numbers or a 1-D tensor, got {tuple(value.shape)} {value!r}")
    el_in, az_in, el_out, az_out, r_in, r_out = check_broadcast(**{name: v.reshape(-1) for name, v in zip(names, values)})
    turn = torch.deg2rad(az_out - az_in)
    return torch.stack([torch.deg2rad(el_in - el_out), torch.sin(turn), torch.cos(turn), r_out - r_in], -1)


class CCProjection(ModelMixin, ConfigMixin):
    """The linear layer from [CLIP image embedding, camera] back to the embedding's width.

    Named and configured as the community pipeline's, so a real checkpoint's ``cc_projection``
    folder loads into it. ``identity_init`` starts it as Zero-1-to-3's fine-tuning does: the
    embedding passes through unchanged and the camera is ignored, so training starts from the
    image-variation model it was initialised from.
    """

    @register_to_config
    def __init__(self, in_channel: int = 772, out_channel: int = 768):
        super().__init__()
        self.projection = nn.Linear(in_channel, out_channel)

    def identity_init(self) -> "CCProjection":
        with torch.no_grad():
            self.projection.weight.zero_()
            self.projection.weight[:, :self.config.out_channel].copy_(torch.eye(self.config.out_channel))
            self.projection.bias.zero_()
        return self

    def forward(self, joined: torch.Tensor) -> torch.Tensor:
        return self.projection(joined)


class ViewConditionedUNet(nn.Module):
    """The U-Net and the projection together: ``ε [B,4,h,w]`` for a noisy target latent and its conditions.

    Training fine-tunes exactly this module; sampling and Zero123-SDS call it, with ``drop`` marking the
    rows that get the unconditional (all-zero) conditions.
    """

    def __init__(self, unet: UNet2DConditionModel, cc_projection: CCProjection):
        super().__init__()
        if unet.config.in_channels != 2 * unet.config.out_channels:
            raise ValueError(f"unet: expected twice as many input channels as output channels (the noisy latent and "
                             f"the input view's), got {unet.config.in_channels} in, {unet.config.out_channels} out")
        if cc_projection.config.out_channel != unet.config.cross_attention_dim:
            raise ValueError(f"cc_projection: expected out_channel = the U-Net's cross_attention_dim "
                             f"{unet.config.cross_attention_dim}, got {cc_projection.config.out_channel}")
        self.unet, self.cc_projection = unet, cc_projection

    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, image_latents: torch.Tensor,
                image_embeds: torch.Tensor, camera: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """``noisy_latents``, ``image_latents [B,4,h,w]``; ``timesteps [B]``; ``image_embeds [B,D]``; ``camera [B,4]``;
        ``drop [B]`` (bool) or None."""
        sample, tokens = denoiser_inputs(noisy_latents, image_latents, image_embeds, camera, self.cc_projection, drop)
        return self.unet(sample, timesteps, encoder_hidden_states=tokens).sample


def denoiser_inputs(noisy_latents: torch.Tensor, image_latents: torch.Tensor, image_embeds: torch.Tensor,
                    camera: torch.Tensor, projection, drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What Zero-1-to-3's U-Net takes: ``sample [B,8,h,w]``, the noisy target latent and the input view's latent on the
    channels, and ``tokens [B,1,C]``, ``projection([image_embeds, camera])``. Rows where ``drop [B]`` is true get the
    unconditional input: both conditions zero (the latent and the projected token), as guidance needs them."""
    tokens = projection(torch.cat([image_embeds, camera.to(image_embeds)], -1))[:, None]
    if drop is not None:
        keep = (~drop).to(tokens.dtype)
        tokens, image_latents = tokens * keep[:, None, None], image_latents * keep[:, None, None, None]
    return torch.cat([noisy_latents, image_latents], 1), tokens


def widen_conv_in(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """A copy of a text-to-image U-Net with 8 input channels, the new 4 zero-initialised (Zero-1-to-3's start).

    At the start the copy ignores the input view's latent and denoises exactly as ``unet`` does.
    """
    wide = unet_with_config(unet, in_channels=2 * unet.config.in_channels)
    state = unet.state_dict()
    state["conv_in.weight"] = widen_input_channels(state["conv_in.weight"])
    wide.load_state_dict(state)
    return wide


def unet_with_config(unet: UNet2DConditionModel, **changes) -> UNet2DConditionModel:
    """A new, randomly initialised U-Net of ``unet``'s config with ``changes``, on ``unet``'s device and dtype: the
    first step of the surgery that makes toy-zero123 and toy-mvdream from toy SD's U-Net."""
    # Without the private keys: a loaded config's "_use_default_values" would reset changed keys to their defaults.
    config = {key: value for key, value in unet.config.items() if not key.startswith("_")}
    new = UNet2DConditionModel(**{**config, **changes}).to(unet.device)
    # Cast only when needed: diffusers' ``to`` logs a float32 warning for any dtype given, even the one it has.
    return new if new.dtype == unet.dtype else new.to(unet.dtype)


def widen_input_channels(weight: torch.Tensor) -> torch.Tensor:
    """A convolution's weight ``[O,I,k,k]`` -> ``[O,2I,k,k]``: the same filters, and zeros for the new input channels, so
    the layer's output is unchanged whatever the new channels hold."""
    return torch.cat([weight, torch.zeros_like(weight)], 1)


@dataclass
class Zero123:
    """Zero-1-to-3's parts: ``vae``, ``image_encoder`` (CLIP vision tower with projection), the 8-channel
    ``unet``, ``cc_projection``, a ``scheduler``, and the image encoder's normalisation."""

    vae: AutoencoderKL
    image_encoder: CLIPVisionModelWithProjection
    unet: UNet2DConditionModel
    cc_projection: CCProjection
    scheduler: DDIMScheduler
    image_mean: tuple = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's, as the real model uses
    image_std: tuple = (0.26862954, 0.26130258, 0.27577711)

    def __post_init__(self):
        self.denoiser = ViewConditionedUNet(self.unet, self.cc_projection)
        for part in (self.vae, self.image_encoder, self.denoiser):
            part.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path, device=None, dtype=torch.float32, local_files_only: bool = True) -> "Zero123":
        """A checkpoint folder (or hub id, with ``local_files_only=False``) in the community pipeline's layout."""
        kwargs = dict(local_files_only=local_files_only)
        with quiet_loading():
            parts = dict(vae=AutoencoderKL.from_pretrained(path, subfolder="vae", **kwargs),
                         image_encoder=CLIPVisionModelWithProjection.from_pretrained(path, subfolder="image_encoder",
                                                                                     **kwargs),
                         unet=UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kwargs),
                         cc_projection=CCProjection.from_pretrained(path, subfolder="cc_projection", **kwargs),
                         scheduler=DDIMScheduler.from_pretrained(path, subfolder="scheduler", **kwargs))
            try:
                processor = CLIPImageProcessorPil.from_pretrained(path, subfolder="feature_extractor", **kwargs)
                parts.update(image_mean=tuple(processor.image_mean), image_std=tuple(processor.image_std))
            except OSError:  # no feature_extractor folder: OpenAI CLIP's normalisation
                pass
        return cls(**parts).to(device or get_device(), dtype)

    def save_pretrained(self, path) -> None:
        """Write the community pipeline's layout (each part in its folder, and ``model_index.json``)."""
        path = Path(path)
        for name in ("vae", "image_encoder", "unet", "cc_projection", "scheduler"):
            getattr(self, name).save_pretrained(path / name)
        size = self.image_encoder.config.image_size
        CLIPImageProcessorPil(image_mean=list(self.image_mean), image_std=list(self.image_std), size={"shortest_edge": size},
                           crop_size={"height": size, "width": size}).save_pretrained(path / "feature_extractor")
        index = {"_class_name": "Zero1to3StableDiffusionPipeline", "vae": ["diffusers", "AutoencoderKL"],
                 "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
                 "unet": ["diffusers", "UNet2DConditionModel"], "cc_projection": ["pipeline_zero1to3", "CCProjection"],
                 "scheduler": ["diffusers", "DDIMScheduler"], "feature_extractor": ["transformers", "CLIPImageProcessor"],
                 "safety_checker": [None, None]}
        (path / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")

    def to(self, device=None, dtype=None) -> "Zero123":
        for part in (self.vae, self.image_encoder, self.denoiser):
            part.to(device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel, as diffusers' pipelines name it."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        """The side of the images the U-Net was trained on (64 for the toy prior, 256 for Zero-1-to-3)."""
        return self.unet.config.sample_size * self.vae_scale_factor

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images [B,3,H,W]`` in [0,1] (at ``image_size``) -> ``(image_embeds [B,D], image_latents [B,4,h,w])``.

        Differentiable, so Zero123-SDS could backpropagate through it; the latents are unscaled.
        """
        images = check_images("images", images)
        check_tensor("images", images, shape=[None, 3, self.image_size, self.image_size])
        dtype = self.unet.dtype
        pixels = clip_pixels(images, self.image_encoder.config.image_size, self.image_mean, self.image_std)
        embeds = self.image_encoder(pixel_values=pixels.to(self.device, dtype)).image_embeds
        latents = self.vae.encode((images * 2 - 1).to(self.device, dtype)).latent_dist.mode()
        return embeds, latents

    def guided_noise(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, image_latents: torch.Tensor,
                     image_embeds: torch.Tensor, camera: torch.Tensor, guidance_scale: float, cfg: str = "diffusers"
                     ) -> torch.Tensor:
        """Classifier-free guided ``ε [B,4,h,w]``, the unconditional pass on zeroed conditions; ``cfg`` is the form of
        ``diffusion.sampling.classifier_free_guidance`` (the default, ε_u + s (ε_c - ε_u), is Zero-1-to-3's)."""
        check_non_negative("guidance_scale", guidance_scale)
        check_choice("cfg", cfg, CFG_FORMS)
        if guidance_scale == 1.0 and cfg == "diffusers":
            return self.denoiser(noisy_latents, timesteps, image_latents, image_embeds, camera)
        n = len(noisy_latents)
        drop = torch.arange(2 * n, device=noisy_latents.device) < n
        both = self.denoiser(noisy_latents.repeat(2, 1, 1, 1), timesteps.repeat(2), image_latents.repeat(2, 1, 1, 1),
                             image_embeds.repeat(2, 1), camera.repeat(2, 1), drop)
        uncond, cond = both.chunk(2)
        return classifier_free_guidance(cond, uncond, guidance_scale, cfg)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, camera: torch.Tensor, num_inference_steps: int = 50,
                 guidance_scale: float = 3.0, generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
        """New views ``[B,3,H,W]`` in [0,1] of ``images [B,3,H,W]`` (in [0,1]) after the moves ``camera [B,4]``
        (``relative_camera``), by DDIM with classifier-free guidance (Zero-1-to-3's default scale is 3)."""
        images = check_images("images", images)
        camera = check_tensor("camera", camera, shape=[len(images), CAMERA_WIDTH], floating=True).to(self.device)
        steps = check_positive_int("num_inference_steps", num_inference_steps)
        eta = check_fraction("eta", eta)
        embeds, image_latents = self.encode_image(images)
        shape = image_latents.shape
        latents = torch.randn(shape, generator=generator).to(self.device, image_latents.dtype)
        self.scheduler.set_timesteps(steps, device=self.device)
        latents = latents * self.scheduler.init_noise_sigma
        for t in self.scheduler.timesteps:
            t_batch = t.expand(shape[0]).to(self.device)
            noise = self.guided_noise(self.scheduler.scale_model_input(latents, t), t_batch, image_latents, embeds, camera,
                                      guidance_scale)
            latents = self.scheduler.step(noise, t, latents, eta=eta, generator=generator).prev_sample
        return self._decode(latents / self.vae.config.scaling_factor)

    @torch.no_grad()
    def denoised_guess(self, images: torch.Tensor, truths: torch.Tensor, camera: torch.Tensor, timestep: int,
                       guidance_scale: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """The denoiser's one-step guess ``[B,3,H,W]`` at ``truths [B,3,H,W]``, the views of ``images [B,3,H,W]``
        after the moves ``camera [B,4]``: each truth's latent noised to ``timestep``, then
        ``ẑ_0 = (z_t - √(1-ᾱ_t) ε̂)/√ᾱ_t``, decoded.

        It is the model's estimate of the mean view given what it was shown, before any sampler runs: its
        distance from ``round_trip(truths)`` is what the denoiser itself has not learned. ``guidance_scale`` 0 is
        the unconditional branch (the input and the camera taken away), so the two measure how much it reads them.
        """
        images, truths = check_images("images", images), check_images("truths", truths)
        check_tensor("truths", truths, shape=list(images.shape))
        camera = check_tensor("camera", camera, shape=[len(images), CAMERA_WIDTH], floating=True).to(self.device)
        steps = self.scheduler.config.num_train_timesteps
        if isinstance(timestep, bool) or not isinstance(timestep, int) or not 0 <= timestep < steps:
            raise ValueError(f"timestep: expected an integer in [0, {steps}), got {timestep!r}")
        embeds, image_latents = self.encode_image(images)
        clean = self.encode_image(truths)[1] * self.vae.config.scaling_factor
        noise = torch.randn(clean.shape, generator=generator).to(self.device, clean.dtype)
        t = torch.full((len(clean),), timestep, device=self.device)
        noisy = forward_process(self.scheduler).add_noise(clean, noise, t)
        output = self.guided_noise(noisy, t, image_latents, embeds, camera, guidance_scale)
        alpha_bar = self.scheduler.alphas_cumprod[timestep].item()
        guess = (noisy - (1 - alpha_bar) ** 0.5 * epsilon_from_output(self.scheduler, output, noisy, t)) / alpha_bar ** 0.5
        return self._decode(guess / self.vae.config.scaling_factor)

    @torch.no_grad()
    def round_trip(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B,3,H,W]`` in [0,1] through the VAE and back: the best any sample of this model can be."""
        return self._decode(self.encode_image(images)[1])

    def _decode(self, unscaled_latents: torch.Tensor) -> torch.Tensor:
        return ((self.vae.decode(unscaled_latents).sample.float() + 1) / 2).clamp(0, 1)


def novel_view_set(objects, elevation: float = 15.0, azimuth: float = 0.0, turns=(30.0, 90.0, 180.0), size: int = 64
                   ) -> dict:
    """Toy-world renders to score novel views against: each object from (``elevation``, ``azimuth``), the
    input, and turned by each of ``turns`` (degrees) at the same elevation, the truths.

    Returns ``inputs [N,3,S,S]``, ``truths`` {turn: ``[N,3,S,S]``}, and the angles.
    """
    def view(az: float) -> torch.Tensor:
        c2w = orbit_camera(elevation, az, DEFAULT_RADIUS)
        return torch.stack([render(obj, c2w, size, size, DEFAULT_FOV_DEG, antialias=2)["image"] for obj in objects]
                           ).permute(0, 3, 1, 2)

    return {"inputs": view(azimuth), "truths": {turn: view(azimuth + turn) for turn in turns},
            "elevation": elevation, "azimuth": azimuth}


def score_novel_views(model: Zero123, views: dict, num_inference_steps: int = 50, guidance_scale: float = 3.0,
                      seed: int = 0, batch_size: int = 64) -> dict:
    """PSNR and SSIM of ``model``'s views against the truths of ``novel_view_set``, beside two baselines.

    The baselines need no model: the input copied (right for a turn of 0, and for anything round) and
    the input mirrored left to right (right for the back of an object whose halves mirror each other).
    "vae" is the ceiling: each truth through the model's VAE and back, which no sample can beat by much.
    Returns {turn: {"zero123" | "copy" | "mirror" | "vae": {"psnr": dB, "ssim": ...}}}, each a mean over the
    objects, and the generated views under "samples" {turn: ``[N,3,S,S]``}.
    """
    inputs, table, samples = views["inputs"], {}, {}
    generator = torch.Generator().manual_seed(seed)
    for turn, truth in views["truths"].items():
        camera = relative_camera(views["elevation"], views["azimuth"], views["elevation"], views["azimuth"] + turn)
        camera = camera.expand(len(inputs), CAMERA_WIDTH)
        samples[turn] = torch.cat([model(chunk, camera[:len(chunk)], num_inference_steps, guidance_scale, generator).cpu()
                                   for chunk in inputs.split(batch_size)])
        ceiling = torch.cat([model.round_trip(chunk).cpu() for chunk in truth.split(batch_size)])
        table[turn] = {name: image_scores(guess, truth) for name, guess in
                       (("zero123", samples[turn]), ("copy", inputs), ("mirror", inputs.flip(-1)), ("vae", ceiling))}
    return {**table, "samples": samples}


def image_scores(images: torch.Tensor, truths: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of ``images`` against ``truths``, both ``[N,3,H,W]``, image by image."""
    check_tensor("images", images, shape=list(truths.shape))
    pairs = list(zip(images.float(), truths.float()))
    return {"psnr": sum(psnr(a, b).item() for a, b in pairs) / len(pairs),
            "ssim": sum(ssim(a.permute(1, 2, 0), b.permute(1, 2, 0)).item() for a, b in pairs) / len(pairs)}


__all__ = ["CAMERA_WIDTH", "CCProjection", "ViewConditionedUNet", "Zero123", "denoiser_inputs", "image_scores", "novel_view_set", "relative_camera",
           "score_novel_views", "unet_with_config", "widen_conv_in", "widen_input_channels"]
