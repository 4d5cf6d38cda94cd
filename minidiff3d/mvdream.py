"""MVDream: one diffusion model that denoises four views of one object together.

MVDream turns a text-to-image U-Net into a multi-view one with two changes, and nothing else:

* **Joint self-attention.** Every self-attention layer runs over the tokens of all V views of an
  object at once: the activations ``(B·V, L, C)`` are reshaped to ``(B, V·L, C)`` before attention
  and back after. The weights are the 2-D model's, so the fine-tuning starts from what it knew, and
  a pixel of one view can look at the same part of the object in another. Cross-attention to the
  text stays per view. (The source chapter bolts a *second*, per-position attention across views
  on after self-attention: new weights that start untrained, and each token sees only the tokens at
  its own pixel in the other views, which is not where the same point of the object appears.)
* **A camera per view**, the flattened 4x4 camera-to-world matrix (16 numbers), through an MLP and
  **added to the timestep embedding**, which every residual block reads (the source adds it to the
  text embedding, where only cross-attention sees it). In diffusers this is exactly
  ``UNet2DConditionModel``'s class embedding of type ``"projection"`` (Linear, SiLU, Linear, added to
  the time embedding), fed the cameras as ``class_labels``.

toy-mvdream's cameras are relative to the first view (its azimuth subtracted from all), so a set and
the same set turned about the up axis look the same to the model: it cannot know, nor needs to know,
where the world's front is. Translations are divided by the orbit radius (unit distance). The
released MVDream was trained otherwise, on world cameras in its own axes (``mvdream_port.port_cameras``).

The processors carry no weights, so a multi-view U-Net saves and loads as a plain
``UNet2DConditionModel``; ``multiview_unet`` (or ``set_views``) installs them after loading.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from .cameras import orbit_camera
from .diffusion.sampling import epsilon_from_output, forward_process, guided_epsilon
from .priors.captions import view_name, with_view
from .validation import check_broadcast, check_choice, check_images, check_non_negative, check_positive_int, check_tensor
from .zero123 import unet_with_config

CAMERA_WIDTH = 16  # a flattened 4x4 camera-to-world matrix


class MultiViewAttnProcessor:
    """Self-attention over the tokens of all ``num_views`` views of each object; cross-attention per view.

    The batch must hold whole sets, view after view: rows ``[b·V, (b+1)·V)`` are object b's views.
    ``num_views = 1`` is the 2-D model's per-view attention.
    """

    def __init__(self, num_views: int = 4):
        self.num_views = check_positive_int("num_views", num_views)
        self.attend = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None) -> torch.Tensor:
        views = self.num_views
        if encoder_hidden_states is not None or views == 1:  # cross-attention, or per-view self-attention
            return self.attend(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if attention_mask is not None:  # a per-view mask has no meaning over the joined tokens
            raise ValueError("attention_mask: expected None for joint self-attention over the views, got a mask")
        rows, tokens, channels = hidden_states.shape
        if rows % views:
            raise ValueError(f"hidden_states: expected whole sets of {views} views on the batch axis, got {rows} rows")
        joint = hidden_states.reshape(rows // views, views * tokens, channels)  # (B·V, L, C) -> (B, V·L, C)
        return self.attend(attn, joint, None, attention_mask, temb).reshape(rows, tokens, channels)


def set_views(unet: UNet2DConditionModel, num_views: int) -> UNet2DConditionModel:
    """Make every self-attention layer of ``unet`` join ``num_views`` views (1: per view, the 2-D model), in place.

    It stays so until set again: ``guided_noise`` and ``sample_views`` set it on every call.
    """
    num_views = check_positive_int("num_views", num_views)
    if unet.config.class_embed_type != "projection":  # a 2-D U-Net would drop the cameras without a word
        raise ValueError(f"unet: expected a multi-view U-Net with a camera embedding (mvdream.multiview_unet, "
                         f"priors.load('toy-mvdream')), got class_embed_type={unet.config.class_embed_type!r}")
    processors = unet.attn_processors
    own = [p for name, p in processors.items() if name.endswith("attn1.processor")]
    if all(isinstance(p, MultiViewAttnProcessor) for p in own):  # cheap enough to call at every step
        for processor in own:
            processor.num_views = num_views
    else:  # the first time: self-attention gets the joint processor, cross-attention keeps its own
        unet.set_attn_processor({name: MultiViewAttnProcessor(num_views) if name.endswith("attn1.processor") else p
                                 for name, p in processors.items()})
    return unet


def joined_views(unet: UNet2DConditionModel) -> int:
    """How many views ``unet``'s self-attention joins now (1 for a 2-D U-Net)."""
    counts = {getattr(p, "num_views", 1) for name, p in unet.attn_processors.items() if name.endswith("attn1.processor")}
    if len(counts) != 1:
        raise ValueError(f"unet: expected one number of views in every self-attention layer, got {sorted(counts)}")
    return counts.pop()


def multiview_unet(unet: UNet2DConditionModel, num_views: int = 4) -> UNet2DConditionModel:
    """A multi-view U-Net from a text-to-image one: the same weights, a camera MLP added to the timestep embedding
    (its last layer zero-initialised, so the new model starts as the old one), and joint self-attention.

    A U-Net that already has the camera embedding (a loaded multi-view checkpoint) only gets the processors.
    """
    if unet.config.class_embed_type != "projection":
        if unet.config.class_embed_type is not None or unet.config.num_class_embeds is not None:
            raise ValueError(f"unet: expected a text-to-image U-Net without a class embedding, got class_embed_type="
                             f"{unet.config.class_embed_type!r}, num_class_embeds={unet.config.num_class_embeds!r}")
        widened = unet_with_config(unet, class_embed_type="projection", projection_class_embeddings_input_dim=CAMERA_WIDTH)
        missing, unexpected = widened.load_state_dict(unet.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("class_embedding.") for k in missing), (missing, unexpected)
        torch.nn.init.zeros_(widened.class_embedding.linear_2.weight)
        torch.nn.init.zeros_(widened.class_embedding.linear_2.bias)
        unet = widened
    elif unet.config.projection_class_embeddings_input_dim != CAMERA_WIDTH:
        raise ValueError(f"unet: expected a camera embedding of {CAMERA_WIDTH} inputs, got "
                         f"{unet.config.projection_class_embeddings_input_dim}")
    return set_views(unet, num_views)


def _set_angles(elevation, azimuth) -> tuple[torch.Tensor, torch.Tensor]:
    """``azimuth [V]`` or ``[B,V]`` (degrees) and ``elevation`` broadcast to it: a number, or one per set."""
    azimuth = torch.as_tensor(azimuth, dtype=torch.float32)
    if azimuth.ndim not in (1, 2):
        raise ValueError(f"azimuth: expected [V] or [B,V] degrees, got shape {list(azimuth.shape)}")
    check_tensor("azimuth", azimuth)
    elevation = check_tensor("elevation", torch.as_tensor(elevation, dtype=torch.float32))
    fits = elevation.ndim == 0 or elevation.shape == azimuth.shape or (
        azimuth.ndim == 2 and elevation.shape == (len(azimuth), 1))  # a [B] elevation would be ambiguous when B == V
    if not fits:
        raise ValueError(f"elevation: expected a number, [B,1] or azimuth's shape {list(azimuth.shape)}, "
                         f"got {list(elevation.shape)}")
    return torch.broadcast_to(elevation, azimuth.shape), azimuth


def relative_cameras(elevation, azimuth) -> torch.Tensor:
    """``[..., V, 16]`` flattened camera-to-world matrices of V orbit views, turned so that the first view's
    azimuth is 0, with unit distance to the centre: toy-mvdream's cameras.

    ``azimuth``: degrees, ``[V]`` or ``[B,V]``; ``elevation``: degrees, a number, ``[B,1]`` (one per set), or
    azimuth's shape.
    """
    elevation, azimuth = _set_angles(elevation, azimuth)
    turned = azimuth - azimuth[..., :1]
    c2w = orbit_camera(elevation.reshape(-1), turned.reshape(-1), 1.0)
    return c2w.reshape(*azimuth.shape, CAMERA_WIDTH)


def port_cameras(elevation, azimuth) -> torch.Tensor:
    """``[..., 16]`` flattened camera-to-world matrices as the released MVDream was trained with, for angles in
    degrees as its ``get_camera`` takes them (numbers or tensors that broadcast; ``[...]`` their shape).

    The port (``mvdream/util.py``, ``get_camera``; the same as the original's ``mvdream/camera_utils.py``) builds
    each camera in a y-up world: at unit distance, azimuth 0 on +z and 90 on +x, positive elevation above, an
    OpenGL look-at with up +y. Then ("blender_coord") it turns the world to z-up by (x, y, z) -> (x, -z, y), which
    moves azimuth 0 to -y (Blender's front view) and leaves it growing towards +x, counter-clockwise seen from
    above. That is ``cameras.orbit_camera``'s frame, axes and look-at, with every azimuth 90° smaller.

    It differs from ``relative_cameras`` in two ways. (1) Nothing is subtracted: the cameras are absolute
    (the port's pipeline always starts its views at azimuth 0, the original's script at 90, threestudio's
    multi-view SDS at random), so the model was shown where an object's front is. (2) The azimuths are offset:
    ``relative_cameras(el, az)`` equals ``port_cameras(el, az - az[0] + 90)``. Straight above or below, where the
    original's look-at is undefined, the right axis is the direction of growing azimuth.
    """
    elevation = check_tensor("elevation", torch.as_tensor(elevation, dtype=torch.float32))
    azimuth = check_tensor("azimuth", torch.as_tensor(azimuth, dtype=torch.float32))
    elevation, azimuth = check_broadcast(elevation=elevation, azimuth=azimuth)
    c2w = orbit_camera(elevation.reshape(-1), azimuth.reshape(-1) - 90.0, 1.0)
    return c2w.reshape(*azimuth.shape, CAMERA_WIDTH)


CAMERA_CONVENTIONS = {"relative": relative_cameras, "mvdream": port_cameras}


def camera_inputs(elevation, azimuth, convention: str = "relative") -> torch.Tensor:
    """``[..., V, 16]``: what the model is told of each view's camera, in the ``convention`` it was trained with:
    ``"relative"`` (toy-mvdream, ``relative_cameras``) or ``"mvdream"`` (the released model, ``port_cameras``)."""
    check_choice("convention", convention, tuple(CAMERA_CONVENTIONS))
    elevation, azimuth = _set_angles(elevation, azimuth)
    return CAMERA_CONVENTIONS[convention](elevation, azimuth)


def guided_noise(pipe, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 cameras: torch.Tensor, num_views: int, guidance_scale: float, cfg: str = "diffusers") -> torch.Tensor:
    """The guided ε̂ ``[B·V,4,h,w]`` of ``pipe``'s multi-view U-Net for B sets of V = ``num_views`` views (1: each
    view on its own), in one pass over both halves.

    ``noisy [B·V,4,h,w]`` (set after set), ``t [B·V]``, ``cond``/``uncond`` ``[B·V,L,D]``, ``cameras [B·V,16]``.
    The unconditional half keeps the cameras: MVDream drops only the text for guidance.
    """
    check_tensor("cameras", cameras, shape=[len(noisy), CAMERA_WIDTH], floating=True)
    set_views(pipe.unet, num_views)
    return guided_epsilon(pipe.unet, pipe.scheduler, noisy, t, cond, uncond, guidance_scale, cfg, cameras)


def _check_prompts(prompts) -> None:
    if isinstance(prompts, str) or not prompts:
        raise ValueError(f"prompts: expected a non-empty list of strings, got {prompts!r}")


def ring_azimuths(num_views: int = 4, start: float = 0.0) -> torch.Tensor:
    """``[V]`` azimuths (degrees) evenly around the object from ``start``: MVDream's orthogonal views for V = 4."""
    return start + torch.arange(check_positive_int("num_views", num_views)) * 360.0 / num_views


@torch.no_grad()
def sample_views(pipe, prompts: list[str], elevation: float = 15.0, azimuth_start: float = 0.0, num_views: int = 4,
                 num_inference_steps: int = 25, guidance_scale: float = 7.5, generator: torch.Generator | None = None,
                 negative_prompt: str = "", joint: bool = True, cameras: str = "relative") -> torch.Tensor:
    """``[B,V,3,H,W]`` in [0,1]: V views of one object per prompt, at ``elevation`` and V azimuths evenly spaced from
    ``azimuth_start``, denoised together by DDIM with classifier-free guidance (``joint=False``: the same model with
    per-view self-attention, each view blind to the others). ``cameras``: the convention of ``camera_inputs`` the
    model was trained with (``"mvdream"`` for the released weights).

    ``pipe``: a ``StableDiffusionPipeline`` whose U-Net is multi-view (``priors.load("toy-mvdream")``); sampling
    uses DDIM on its scheduler's schedule.
    """
    _check_prompts(prompts)
    check_non_negative("guidance_scale", guidance_scale)
    steps = check_positive_int("num_inference_steps", num_inference_steps)
    views, sets, device = check_positive_int("num_views", num_views), len(prompts), pipe.device
    cond, uncond = pipe.encode_prompt(list(prompts), device, 1, True, [negative_prompt] * sets)
    cond, uncond = cond.repeat_interleave(views, 0), uncond.repeat_interleave(views, 0)
    azimuths = ring_azimuths(views, azimuth_start).expand(sets, views)
    cameras = camera_inputs(float(elevation), azimuths, cameras).reshape(sets * views, CAMERA_WIDTH).to(device)
    size = pipe.unet.config.sample_size
    latents = torch.randn((sets * views, pipe.unet.config.in_channels, size, size), generator=generator)
    latents = latents.to(device, pipe.unet.dtype)
    # guided_noise gives ε whatever the model predicts; latents are not clipped (DDIM's default for a bare config)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, prediction_type="epsilon", clip_sample=False)
    scheduler.set_timesteps(steps, device=device)
    latents = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        noise = guided_noise(pipe, latents, t.expand(len(latents)), cond, uncond, cameras, views if joint else 1,
                             guidance_scale)
        latents = scheduler.step(noise, t, latents).prev_sample
    images = pipe.vae.decode((latents / pipe.vae.config.scaling_factor).to(pipe.vae.dtype)).sample
    return ((images.float() + 1) / 2).clamp(0, 1).reshape(sets, views, *images.shape[1:]).cpu()


@torch.no_grad()
def denoising_loss(pipe, images: torch.Tensor, captions: list[str], cameras: torch.Tensor, joint: bool = True,
                   timesteps=(50, 200, 400, 600, 800), seed: int = 0) -> dict[int, float]:
    """The multi-view U-Net's training loss on given sets, per timestep: ``{t: MSE(ε̂, ε)}`` for ``images [S,V,3,H,W]``
    in [0,1] (e.g. held-out renders), one caption per set, ``cameras [S,V,16]`` as the model is told them (ablate
    them by passing zeros, or another set's), all V views at one t, the same noise (from ``seed``) for every call.

    A conditioning the model uses lowers this loss; one it ignores leaves it where it was.
    """
    sets, views = check_tensor("images", images, shape=["S", "V", 3, None, None], floating=True).shape[:2]
    pixels = check_images("images", images.flatten(0, 1))
    check_tensor("cameras", cameras, shape=[sets, views, CAMERA_WIDTH], floating=True)
    if len(captions) != sets:
        raise ValueError(f"captions: expected one caption per set ({sets}), got {len(captions)}")
    device, vae = pipe.device, pipe.vae
    latents = vae.encode((pixels * 2 - 1).to(device, vae.dtype)).latent_dist.mode() * vae.config.scaling_factor
    text = pipe.encode_prompt([c for c in captions for _ in range(views)], device, 1, False)[0]
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents)
    set_views(pipe.unet, views if joint else 1)
    scheduler, losses = forward_process(pipe.scheduler), {}
    for t in timesteps:
        t_batch = torch.full((len(latents),), int(t), device=device)
        noisy = scheduler.add_noise(latents, noise, t_batch)
        output = pipe.unet(noisy, t_batch, text, class_labels=cameras.flatten(0, 1).to(latents)).sample
        losses[int(t)] = (epsilon_from_output(scheduler, output, noisy, t_batch) - noise).float().pow(2).mean().item()
    return losses


@torch.no_grad()
def independent_views(pipe, prompts: list[str], elevation: float = 15.0, azimuth_start: float = 0.0, num_views: int = 4,
                      num_inference_steps: int = 25, guidance_scale: float = 7.5, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """The baseline: ``[B,V,3,H,W]`` from a 2-D ``pipe`` (toy SD), each view sampled on its own with DreamFusion's
    view prompt ("a red duck, back view") for the cameras ``sample_views`` uses."""
    _check_prompts(prompts)
    views = check_positive_int("num_views", num_views)
    words = view_name(torch.full((views,), float(elevation)), ring_azimuths(views, azimuth_start))
    texts = [with_view(prompt, word) for prompt in prompts for word in words]
    images = pipe(texts, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, generator=generator,
                  output_type="pt").images
    return images.float().clamp(0, 1).reshape(len(prompts), views, *images.shape[1:]).cpu()


__all__ = ["CAMERA_CONVENTIONS", "CAMERA_WIDTH", "MultiViewAttnProcessor", "camera_inputs", "denoising_loss", "guided_noise",
           "independent_views",
           "joined_views", "multiview_unet", "port_cameras", "relative_cameras",
           "ring_azimuths", "sample_views", "set_views"]
