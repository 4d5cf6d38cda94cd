"""A run's config: the system's own knobs and one config per part, and the methods as presets of it.

``RunConfig`` nests a dataclass per part (each part's config lives beside the part and builds it):

    system      SystemConfig          steps, learning rate, cameras, regularisers, seed
    geometry    DensityFieldConfig    scene.geometry
    material    MaterialConfig        scene.material
    background  BackgroundConfig      scene.background
    renderer    MarcherConfig         marcher
    guidance    SDSConfig             guidance.sds
    prompt      PromptConfig          guidance.prompt

A coarse-to-fine method (Magic3D) is a ``CoarseToFineConfig``: a ``RunConfig`` for the coarse stage plus a
``fine`` stage (``FineStageConfig``: its own steps, resolution, geometry, renderer and guidance).
``config.build(pipe)`` makes the run from either.

``PRESETS`` is a plain dict from a method's name to its description and a function that returns
its ``RunConfig``; there is no registry. ``run_config("dreamfusion", "a red duck", {"system.steps": 200})``
makes one, and ``load_run_config(to_dict(config))`` reads one back from JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from ..config import override, to_dict
from ..guidance import MultiViewSDSConfig, PromptConfig, SDSConfig, VSDConfig
from ..guidance.zero123 import ImagePromptConfig, Zero123SDSConfig
from ..marcher import MarcherConfig
from ..scene import (BackgroundConfig, DensityFieldConfig, DMTetConfig, GaussiansConfig, MaterialConfig, MeshRendererConfig,
                     SplatRendererConfig)
from ..toyworld import DEFAULT_FOV_DEG, DEFAULT_RADIUS, ELEVATION_RANGE
from ..validation import (check_choice, check_fraction, check_interval, check_non_negative, check_non_negative_int, check_positive,
                          check_positive_int)


@dataclass
class SystemConfig:
    """What the system itself decides: the optimisation, the cameras it samples, the regularisers and the seed.

    Cameras: elevation uniform in ``elevation_range``, azimuth uniform in [0, 360), a fixed
    ``radius`` and field of view: those the toy world's priors were trained with, so the prior sees
    objects framed as it knows them. With SD 2.1, widen them as DreamFusion does.
    """

    steps: int = 600
    lr: float = 1e-2
    lr_end: float | None = 1e-3  # cosine decay to this over `steps` (None: constant)
    batch_size: int = 1
    views_per_set: int = 1  # cameras come in sets around the object (multi-view guidance): batch_size of them in all
    render_size: int = 32  # renders are upsampled to the prior's resolution (64 for toy SD) by the guidance
    elevation_range: tuple[float, float] = ELEVATION_RANGE
    radius: float = DEFAULT_RADIUS
    fov_deg: float = DEFAULT_FOV_DEG
    lambda_orient: float = 1e-2
    lambda_sparsity: float = 0.01
    lambda_opaque: float = 0.0
    lambda_laplacian: float = 0.0  # a mesh renderer's regularisers (Magic3D's fine stage)
    lambda_normal: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "render_size", "batch_size", "views_per_set"):
            check_positive_int(f"system.{name}", getattr(self, name))
        if self.batch_size % self.views_per_set:
            raise ValueError(f"system.batch_size: expected whole sets of system.views_per_set={self.views_per_set} "
                             f"views, got {self.batch_size}")
        check_non_negative_int("system.seed", self.seed)
        for name in ("lr", "radius"):
            check_positive(f"system.{name}", getattr(self, name))
        if self.lr_end is not None:
            check_positive("system.lr_end", self.lr_end)
        for name in ("lambda_orient", "lambda_sparsity", "lambda_opaque", "lambda_laplacian", "lambda_normal"):
            check_non_negative(f"system.{name}", getattr(self, name))
        check_interval("system.elevation_range", self.elevation_range, -90.0, 90.0)
        if check_positive("system.fov_deg", self.fov_deg) >= 180:
            raise ValueError(f"system.fov_deg: expected a field of view below 180 degrees, got {self.fov_deg!r}")


@dataclass
class RunConfig:
    """Everything a run is: its ``method`` (a key of ``PRESETS``) and the config of the system and each part."""

    method: str = "dreamfusion"
    system: SystemConfig = field(default_factory=SystemConfig)
    geometry: DensityFieldConfig = field(default_factory=DensityFieldConfig)
    material: MaterialConfig = field(default_factory=MaterialConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    renderer: MarcherConfig = field(default_factory=MarcherConfig)
    guidance: SDSConfig = field(default_factory=SDSConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def __post_init__(self):
        check_choice("method", self.method, tuple(PRESETS))
        views = getattr(self.guidance, "num_views", 1)  # a multi-view prior scores sets of exactly its size
        if views != self.system.views_per_set:
            raise ValueError(f"system.views_per_set: expected the guidance's sets of guidance.num_views={views} views, "
                             f"got {self.system.views_per_set}")

    def build(self, pipe):
        """The run this config describes, on ``pipe`` (a ``System``)."""
        from .system import System

        return System.from_config(self, pipe)


@dataclass
class FineStageConfig:
    """The second stage of a coarse-to-fine run: what differs from the coarse stage's ``SystemConfig`` (the cameras,
    seed and material carry over), and its own geometry, renderer and guidance.

    The fine stage's opacity penalties are off: a mesh's pixels are covered or not, and a penalty on
    covered pixels would only shrink the surface. Its rate stays at 1e-3, where the coarse stage's cosine
    decay ends (from 1e-2): the signed distances live within two cells (0.125) of zero, and Adam moves every
    one of them by about ``lr`` a step in SDS's noisy directions, so at 5e-3 the surface crumples within 150
    steps. Normal consistency at 100 (threestudio's Magic3D uses 1e4, against Stable Diffusion's larger SDS
    loss) is what keeps it smooth; the Laplacian at 1 barely moves a mesh whose vertices are tied to the
    grid's edges (chapter 06).
    """

    steps: int = 150
    lr: float = 1e-3
    lr_end: float | None = None
    render_size: int = 64
    lambda_laplacian: float = 1.0
    lambda_normal: float = 100.0
    geometry: DMTetConfig = field(default_factory=DMTetConfig)
    renderer: MeshRendererConfig = field(default_factory=MeshRendererConfig)
    guidance: SDSConfig = field(default_factory=lambda: SDSConfig(guidance_scale=7.5, t_range=(0.02, 0.5)))

    def __post_init__(self):
        for name in ("steps", "render_size"):
            check_positive_int(f"fine.{name}", getattr(self, name))
        check_positive("fine.lr", self.lr)
        if self.lr_end is not None:
            check_positive("fine.lr_end", self.lr_end)
        for name in ("lambda_laplacian", "lambda_normal"):
            check_non_negative(f"fine.{name}", getattr(self, name))

    def system(self, coarse: SystemConfig) -> SystemConfig:
        """The fine stage's ``SystemConfig``: the coarse one's, with this stage's optimisation and regularisers."""
        return dataclasses.replace(coarse, steps=self.steps, lr=self.lr, lr_end=self.lr_end, render_size=self.render_size,
                                   lambda_sparsity=0.0, lambda_opaque=0.0, lambda_laplacian=self.lambda_laplacian,
                                   lambda_normal=self.lambda_normal)


@dataclass
class CoarseToFineConfig(RunConfig):
    """A ``RunConfig`` whose parts are the coarse stage's, and a ``fine`` stage that starts from its result."""

    fine: FineStageConfig = field(default_factory=FineStageConfig)

    def build(self, pipe):
        """The two-stage run (a ``CoarseToFine``) on ``pipe``."""
        from .coarse_to_fine import CoarseToFine

        return CoarseToFine.from_config(self, pipe)


def dreamfusion() -> RunConfig:
    """DreamFusion on toy SD, sized for a 2-core CPU (about a minute a prompt on the reference machine).

    Where it departs from the paper, and why (each measured in chapter 04's notes):

    * guidance 7.5, not 100: toy SD's conditional is already sharp, and at 100 its colours saturate
      and shapes collapse (chapter 04's 2-D playground). At 15, over seeds 0-4, the brown house read as
      red on three and the purple snowman as a duck on three; at 7.5, with the lighter opacity penalty,
      both scored 0.88 or more on every seed.
    * the learning rate decays (cosine, to 1e-3): SDS's gradient is mostly noise, and at a constant
      rate Adam keeps walking the field with it: grain, and colours that drift. Runs of ~100 steps are
      better off constant: they have no late phase to settle.
    * every render lit, from around the toy world's light (``scene.material``).
    * opacity penalty 0.01: at 0.1, guidance 3 or less faded objects to a white ghost, and at 0.03 or
      0.05 guidance 7.5 scored lower. Its price is haze. The opacity entropy (``lambda_opaque``) clears
      haze, but at 0.05 with guidance 7.5 it turned the brown house red on all three seeds tried.
    """
    return RunConfig("dreamfusion", guidance=SDSConfig(guidance_scale=7.5, t_range=(0.02, 0.98), t_range_end=(0.02, 0.6)))


def vsd() -> RunConfig:
    """ProlificDreamer's variational score distillation on toy SD: DreamFusion's scene, cameras and schedule, with
    SDS's injected-noise baseline replaced by a camera-conditioned LoRA's score (``guidance.vsd``), at CFG 7.5."""
    return RunConfig("vsd", guidance=VSDConfig(guidance_scale=7.5, t_range=(0.02, 0.98), t_range_end=(0.02, 0.6)))


def magic3d() -> CoarseToFineConfig:
    """Magic3D on toy SD: DreamFusion's coarse stage at half its steps, then a DMTet mesh made from the coarse
    density at level 2 (``DMTetConfig``), rasterized at twice the coarse render size (64, toy SD's own resolution) with
    SDS at small noise levels (t in [0.02, 0.5], as Magic3D's fine stage) and the mesh regularisers."""
    coarse = dreamfusion()
    return CoarseToFineConfig("magic3d", dataclasses.replace(coarse.system, steps=300), guidance=coarse.guidance)


def zero123() -> RunConfig:
    """Image-to-3D by Zero123-SDS on toy-zero123: DreamFusion's scene and schedule, SDS through the view-conditioned
    prior at its own guidance scale (3), and the input view held by the reference loss (``prompt.reference_weight``).

    Every render is lit by the toy world's light, unjittered, as the input photo and the prior's training
    views were, so the field learns albedo and the reference view can match the photo exactly.
    """
    return RunConfig("zero123", material=MaterialConfig(shading_probs={"lambertian": 1.0}, light_spread=0.0),
                     guidance=Zero123SDSConfig(guidance_scale=3.0, t_range=(0.02, 0.98), t_range_end=(0.02, 0.6)),
                     prompt=ImagePromptConfig())


def mvdream() -> RunConfig:
    """MVDream-SDS on toy-mvdream: DreamFusion's scene, material and schedule, but each step renders a set of four
    views around the object (azimuths 90° apart from a random start, one elevation) and scores them together
    through the multi-view U-Net, under the plain prompt (the cameras say which side each view is).

    DreamFusion's 600 steps: on the yellow duck, 200 and 400 steps (and 300 at a constant rate) left a blob where
    600 made a duck; the same is true of DreamFusion itself at 200. Four views a step cost 3.9x its step
    (``benchmarks/guidance_steps.py``).
    """
    return RunConfig("mvdream", system=SystemConfig(steps=600, batch_size=4, views_per_set=4),
                     guidance=MultiViewSDSConfig(guidance_scale=7.5, t_range=(0.02, 0.98), t_range_end=(0.02, 0.6)),
                     prompt=PromptConfig(view_dependent=False))


def check_elevations(name: str, elevations) -> None:
    """A ring's elevations: at least one, each in [-90, 90] degrees."""
    if not elevations:
        raise ValueError(f"{name}: expected at least one elevation, got ()")
    for elevation in elevations:
        check_interval(name, (elevation, elevation), -90.0, 90.0)


@dataclass
class RingConfig:
    """One-2-3-45's views sampled from the prior: ``azimuths`` evenly spaced turns (from the input's azimuth) at each
    of ``elevations`` (degrees), by ``num_inference_steps`` DDIM steps at ``guidance_scale``; the input's own camera
    is left out, since the input itself stands there."""

    azimuths: int = 8
    elevations: tuple[float, ...] = (15.0, 50.0)
    num_inference_steps: int = 50
    guidance_scale: float = 3.0

    def __post_init__(self):
        check_positive_int("guidance.azimuths", self.azimuths)
        check_positive_int("guidance.num_inference_steps", self.num_inference_steps)
        check_non_negative("guidance.guidance_scale", self.guidance_scale)
        check_elevations("guidance.elevations", self.elevations)

    def build(self, model):
        """The sampler (``one2345.ViewRing``) on ``model``, a ``zero123.Zero123``."""
        from .one2345 import ViewRing

        return ViewRing(model, self)


@dataclass
class One2345Config(RunConfig):
    """One-2-3-45's run: the ring of views (``guidance``, a ``RingConfig``) and a photometric fit of the scene to
    them for ``system.steps``."""

    def build(self, pipe):
        """The run (a ``One2345``) on ``pipe``, a ``zero123.Zero123``."""
        from .one2345 import One2345

        return One2345.from_config(self, pipe)


def one2345() -> One2345Config:
    """One-2-3-45 on toy-zero123: 15 views sampled around the input (8 turns at the input's elevation and at 50°),
    then the density field fitted to them and the input for 200 steps, lit by the toy world's unjittered light."""
    # 200 steps: the duck's and the house's unseen turns score as after 300 (16.31 and 15.70 dB, against 16.31 and
    # 15.60) in two thirds of the time; the 45-second goal counts the fit
    return One2345Config("one2345", system=SystemConfig(steps=200),
                         material=MaterialConfig(shading_probs={"lambertian": 1.0}, light_spread=0.0),
                         guidance=RingConfig(), prompt=ImagePromptConfig())


@dataclass
class DensifyConfig:
    """3DGS's adaptive density control during stage 1 (``Gaussians.densify``): every ``every`` updates from ``start``
    to ``stop``, Gaussians whose mean image-space gradient (pixels) passes ``grad_threshold`` are cloned (if their
    largest scale is at most ``percent_dense`` of ``extent``) or split, those fainter than ``min_opacity`` are pruned,
    and no densification adds past ``max_count``."""

    every: int = 50
    start: int = 50
    stop: int = 300
    grad_threshold: float = 0.002
    percent_dense: float = 0.01
    extent: float = 2.0
    min_opacity: float = 0.01
    max_count: int = 8000

    def __post_init__(self):
        for name in ("every", "max_count"):
            check_positive_int(f"densify.{name}", getattr(self, name))
        for name in ("start", "stop"):
            check_non_negative(f"densify.{name}", getattr(self, name))
        for name in ("grad_threshold", "extent"):
            check_positive(f"densify.{name}", getattr(self, name))
        check_fraction("densify.percent_dense", self.percent_dense)
        check_fraction("densify.min_opacity", self.min_opacity)
        if self.stop < self.start:
            raise ValueError(f"densify.stop: expected at least densify.start ({self.start}), got {self.stop}")

    def due(self, update: int) -> bool:
        """Whether to densify after ``update`` (counted from 1)."""
        return self.start <= update <= self.stop and update % self.every == 0


@dataclass
class TextureConfig:
    """Stage 2: the density grid's ``resolution`` and the surface's density ``level``; the ring of cameras
    (``azimuths`` evenly spaced at each of ``elevations``) whose stage-1 renders at ``render_size``, refined by SDEdit at
    ``strength`` (``num_inference_steps`` DDIM steps over the whole schedule), are the targets; and the vertex
    colours' fit to them, ``steps`` of Adam at ``lr`` on the colours' logits."""

    resolution: int = 64
    level: float = 0.1
    elevations: tuple[float, ...] = (0.0, 30.0)
    azimuths: int = 8
    render_size: int = 64
    strength: float = 0.3
    num_inference_steps: int = 20
    steps: int = 100
    lr: float = 0.1

    def __post_init__(self):
        for name in ("resolution", "azimuths", "render_size", "num_inference_steps", "steps"):
            check_positive_int(f"texture.{name}", getattr(self, name))
        check_positive("texture.level", self.level)
        check_fraction("texture.strength", self.strength)
        check_positive("texture.lr", self.lr)
        check_elevations("texture.elevations", self.elevations)


@dataclass
class DreamGaussianConfig(RunConfig):
    """A ``RunConfig`` whose geometry is ``Gaussians`` rendered by the splatter, with stage 1's ``densify`` and stage 2's
    ``texture``."""

    geometry: GaussiansConfig = field(default_factory=GaussiansConfig)
    renderer: SplatRendererConfig = field(default_factory=SplatRendererConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)

    def build(self, pipe):
        """The two-stage run (a ``DreamGaussian``) on ``pipe``."""
        from .dreamgaussian import DreamGaussian

        return DreamGaussian.from_config(self, pipe)


def dreamgaussian() -> DreamGaussianConfig:
    """DreamGaussian on toy SD: Gaussians in a ball, unlit (their colours are what the prior sees), SDS at DreamFusion's
    guidance and timestep schedule, densified every 50 updates; then the textured mesh."""
    return DreamGaussianConfig("dreamgaussian", system=SystemConfig(steps=150, lr=0.05, lambda_sparsity=0.0),
                               material=MaterialConfig(shading_probs={"albedo": 1.0}),
                               guidance=SDSConfig(guidance_scale=7.5, t_range=(0.02, 0.98), t_range_end=(0.02, 0.6)),
                               prompt=PromptConfig())


def dreamgaussian_image() -> DreamGaussianConfig:
    """DreamGaussian from one image on toy-zero123: stage 1 by Zero123-SDS with the reference view held (the
    ``zero123`` preset's guidance and prompt), stage 2's targets refined by toy-zero123 itself."""
    text = dreamgaussian()
    return dataclasses.replace(text, method="dreamgaussian-image", guidance=zero123().guidance, prompt=ImagePromptConfig())


class Preset(NamedTuple):
    """A method: a one-line ``description``, its ``config`` factory, the ``quick`` overrides of quick mode
    (``MINIDIFF3D_QUICK=1``: the step counts the chapter's quick run uses), and the shipped ``prior`` it distils
    (``priors.load``'s name); a text method that also runs from an image names that preset (``image_method``)."""

    description: str
    config: Callable[[], RunConfig]
    quick: dict
    prior: str = "toy-sd"
    image_method: str | None = None  # the same method from an image (``generate --image``), if it has one


PRESETS: dict[str, Preset] = {
    "dreamfusion": Preset("DreamFusion: score distillation (SDS) of a text prompt into a hash-grid density field",
                          dreamfusion, {"system.steps": 120, "system.lr_end": None}),  # chapter 04's quick run
    "vsd": Preset("ProlificDreamer: variational score distillation (VSD), SDS against a LoRA of the prior that learns "
                  "the scene's renders", vsd, {"system.steps": 120, "system.lr_end": None}),
    "magic3d": Preset("Magic3D: coarse SDS on a density field, then a DMTet mesh from it, rasterized at a higher "
                      "resolution and refined with SDS and mesh regularisers; writes a vertex-coloured GLB", magic3d,
                      {"system.steps": 120, "system.lr_end": None, "fine.steps": 60}),
    "mvdream": Preset("MVDream-SDS: score distillation through the multi-view toy-mvdream, four views of the scene "
                      "denoised together with their cameras (no Janus faces)", mvdream,
                      {"system.steps": 60, "system.lr_end": None}, prior="toy-mvdream"),
    "dreamgaussian": Preset("DreamGaussian: SDS into 3-D Gaussians with densification, rendered by the pure-PyTorch "
                            "splatter, then a mesh from their density with its texture refined by SDEdit; writes a "
                            "vertex-coloured GLB", dreamgaussian, {"system.steps": 100, "system.lr_end": None},
                            image_method="dreamgaussian-image"),
    "dreamgaussian-image": Preset("DreamGaussian from an image (--image): its stages on toy-zero123, Zero123-SDS with "
                                  "the reference view, then the textured mesh", dreamgaussian_image,
                                  {"system.steps": 100, "system.lr_end": None}, prior="toy-zero123"),
    "zero123": Preset("Zero123-SDS: image-to-3D, score distillation from the view-conditioned toy-zero123, with a "
                      "reference-view loss on the input image (--image)", zero123,
                      {"system.steps": 80, "system.lr_end": None}, prior="toy-zero123"),
    "one2345": Preset("One-2-3-45: image-to-3D, a ring of views sampled from toy-zero123 in one batch, then the scene "
                      "fitted to them (--image)", one2345, {"system.steps": 100, "guidance.num_inference_steps": 20},
                      prior="toy-zero123"),
}


def run_config(method: str, prompt: str | None = None, overrides: dict | None = None, quick: bool = False) -> RunConfig:
    """The preset of ``method``, with ``prompt`` as its text, its quick-mode step counts if ``quick``, and then
    ``overrides`` (dotted keys or nested dicts) applied."""
    check_choice("method", method, tuple(PRESETS))
    config = PRESETS[method].config()
    if prompt is not None:
        config = dataclasses.replace(config, prompt=dataclasses.replace(config.prompt, text=prompt))
    if quick:
        config = override(config, PRESETS[method].quick)
    return override(config, overrides or {})


def load_run_config(data: dict) -> RunConfig:
    """A ``RunConfig`` from its ``to_dict`` form (e.g. ``run.json``'s ``"config"``): its method's preset, overridden."""
    if not isinstance(data, dict) or "method" not in data:
        raise ValueError(f"config: expected a dict with a 'method' key, got {type(data).__name__}")
    rest = {key: value for key, value in data.items() if key != "method"}
    return run_config(data["method"], overrides=rest)


__all__ = ["CoarseToFineConfig", "DensifyConfig", "DreamGaussianConfig", "FineStageConfig", "TextureConfig", "dreamgaussian", "dreamgaussian_image", "PRESETS", "Preset", "RunConfig", "SystemConfig", "dreamfusion",
           "One2345Config", "RingConfig", "load_run_config", "magic3d", "mvdream", "one2345", "run_config", "to_dict", "vsd",
           "zero123"]
