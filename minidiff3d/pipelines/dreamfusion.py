"""DreamFusion: a text prompt becomes a 3-D scene by score distillation from a 2-D diffusion prior.

Composed in threestudio's split, each part replaceable:

    geometry    DensityField         hash-grid density + albedo, started from a blob
    material    shading.shade        albedo / lambertian / textureless, a randomly placed light
    background  White / Learned      what transparent rays see
    renderer    VolumeRenderer       chapter 01's quadrature over each ray's chord
    guidance    ScoreDistillation    SDS from any StableDiffusionPipeline (toy SD or SD 2.1)
    prompt      PromptProcessor      view-dependent prompts, embeddings cached

Each step draws a random orbit camera, renders, shades, and lets SDS push the render towards what
the prior expects for the prompt seen from that side. Cameras (documented ranges, ``DreamFusionConfig``):
elevation uniform in ``elevation_range``, azimuth uniform in [0, 360), a fixed radius and field
of view: those the toy world's priors were trained with, so the prior sees objects framed as it
knows them. With SD 2.1, widen them as DreamFusion does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import trimesh

from ..cameras import focal_from_fov, orbit_camera
from ..fields import HashGridEncoding
from ..guidance import PromptProcessor, ScoreDistillation
from ..guidance.sds import check_t_range
from ..mesh import extract_mesh
from ..metrics import r_precision
from ..runtime import progress, seeded
from ..scene import SHADINGS, DensityField, LearnedBackground, VolumeRenderer, WhiteBackground, random_light_dirs
from ..toyworld import DEFAULT_FOV_DEG, DEFAULT_RADIUS, grid_points
from ..toyworld.render import AMBIENT as TOY_AMBIENT, LIGHT_DIR as TOY_LIGHT_DIR
from ..training import cosine_decay
from ..validation import (check_choice, check_fraction, check_interval, check_non_negative, check_non_negative_int,
                          check_positive, check_positive_int)

GRID_BASE_RESOLUTION = 16  # the hash grid's coarsest level


def opacity_entropy(opacity: torch.Tensor) -> torch.Tensor:
    """Binary entropy (nats) of each ray's ``opacity`` (any shape, in [0,1]): 0 for empty or opaque, log 2 at one half.

    As a penalty it pushes half-transparent pixels to either side, and so clears haze.
    """
    p = opacity.clamp(1e-5, 1 - 1e-5)  # the slope, log((1 - p) / p), is infinite at 0 and 1
    return torch.special.entr(p) + torch.special.entr(1 - p)


@dataclass
class DreamFusionConfig:
    """Every knob of a run. Defaults are sized for toy SD on a 2-core CPU (about a minute a prompt)."""

    steps: int = 600
    render_size: int = 32  # renders are upsampled to the prior's resolution (64 for toy SD) by the guidance
    n_samples: int = 32  # per ray: about one per finest grid cell (31 across the unit sphere's diameter)
    batch_size: int = 1
    lr: float = 1e-2
    # Cosine decay of the learning rate to lr_end over `steps` (None: constant). SDS's gradient is
    # mostly noise, and at a constant rate Adam keeps walking the field with it: grain, and colours that
    # drift (chapter 04's brown house read as red on most runs at a constant rate). Runs of ~100 steps
    # are better off constant: they have no late phase to settle, and the decay only stunts them.
    lr_end: float | None = 1e-3
    # DreamFusion's 100 suits a large prior; toy SD's conditional is already sharp, and at 100 its
    # colours saturate and shapes collapse (chapter 04's 2-D playground measures it). At 15, over seeds
    # 0-4, the brown house read as red on three and the purple snowman as a duck on three; at 7.5, with
    # the lighter opacity penalty below, both scored 0.88 or more on every seed (chapter 04's notes).
    guidance_scale: float = 7.5
    t_range: tuple[float, float] = (0.02, 0.98)
    t_range_end: tuple[float, float] | None = (0.02, 0.6)
    weighting: str = "sds"
    elevation_range: tuple[float, float] = (-10.0, 80.0)
    radius: float = DEFAULT_RADIUS
    fov_deg: float = DEFAULT_FOV_DEG
    # DreamFusion renders unlit albedo for its first steps and at random after (SD knows flat-coloured
    # images). Toy SD has only seen lit objects: to it an unlit render is out of distribution, and
    # SDS answers with saturated colours (a blue cube turned violet), so here every render is lit.
    albedo_steps: int = 0  # steps rendered unlit before shading_probs applies
    shading_probs: dict = field(default_factory=lambda: {"lambertian": 0.7, "textureless": 0.3})
    # Where the light is drawn around: "camera" (DreamFusion's choice, for a prior that saw every
    # lighting) or "world" (the toy world's fixed light from above, the only one toy SD ever saw).
    light: str = "world"
    ambient: float = TOY_AMBIENT
    background: str = "white"
    blob_density: float = 5.0  # weak enough that SDS can carve a cone's flat base out of the ball
    blob_radius: float = 0.5
    grid_levels: int = 8  # hash-grid levels, from 16 cells to grid_finest
    grid_finest: int = 32  # cells finer than the 32x32 render resolves only add grain to the albedo and normals
    lambda_orient: float = 1e-2
    # Light, to go with guidance 7.5: at 0.1, guidance 3 or less faded objects to a white ghost, and at
    # 0.03 or 0.05 guidance 7.5 scored lower than at 0.01 (chapter 04's notes). Its price is haze.
    lambda_sparsity: float = 0.01
    # The entropy of each ray's opacity (threestudio's lambda_opaque) clears haze, the half-transparent
    # density SDS has no reason to remove against white. Off by default: in chapter 04, 0.05 with guidance
    # 7.5 cleared the haze but turned the brown house red on all three seeds tried.
    lambda_opaque: float = 0.0
    view_dependent: bool = True
    negative_prompt: str = ""
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "render_size", "n_samples", "batch_size", "grid_levels"):
            check_positive_int(f"config.{name}", getattr(self, name))
        for name in ("albedo_steps", "seed"):
            check_non_negative_int(f"config.{name}", getattr(self, name))
        for name in ("lr", "radius", "blob_radius"):
            check_positive(f"config.{name}", getattr(self, name))
        for name in ("guidance_scale", "blob_density", "lambda_orient", "lambda_sparsity", "lambda_opaque"):
            check_non_negative(f"config.{name}", getattr(self, name))
        if self.lr_end is not None:
            check_positive("config.lr_end", self.lr_end)
        check_t_range("config.t_range", self.t_range)
        if self.t_range_end is not None:
            check_t_range("config.t_range_end", self.t_range_end)
        check_interval("config.elevation_range", self.elevation_range, -90.0, 90.0)
        if check_positive("config.fov_deg", self.fov_deg) >= 180:
            raise ValueError(f"config.fov_deg: expected a field of view below 180 degrees, got {self.fov_deg!r}")
        if check_positive_int("config.grid_finest", self.grid_finest) < GRID_BASE_RESOLUTION:
            raise ValueError(f"config.grid_finest: expected ≥ {GRID_BASE_RESOLUTION} (the grid's coarsest level), "
                             f"got {self.grid_finest!r}")
        check_fraction("config.ambient", self.ambient)
        check_choice("config.weighting", self.weighting, ("sds", "uniform"))
        check_choice("config.light", self.light, ("world", "camera"))
        check_choice("config.background", self.background, ("white", "learned"))
        unknown = set(self.shading_probs) - set(SHADINGS)
        if unknown or not self.shading_probs or abs(sum(self.shading_probs.values()) - 1) > 1e-6:
            raise ValueError(f"config.shading_probs: expected probabilities over {'/'.join(SHADINGS)} summing "
                             f"to 1, got {self.shading_probs!r}")


class DreamFusion:
    """A text-to-3D run: ``DreamFusion(pipe, "a red duck").fit()``, then ``render``, ``turntable``, ``export_mesh``."""

    def __init__(self, pipe, prompt: str, config: DreamFusionConfig | None = None):
        self.config = config = config or DreamFusionConfig()
        self.device = pipe.device
        # Every random number of a run comes from its own generator (the initial weights from its seed),
        # so the run is a function of the seed, whatever the caller draws before, during or after it.
        self.generator = torch.Generator().manual_seed(config.seed)
        self.prompt = PromptProcessor(pipe, prompt, config.negative_prompt, config.view_dependent)
        self.guidance = ScoreDistillation(pipe, config.guidance_scale, t_range=config.t_range,
                                          t_range_end=config.t_range_end, weighting=config.weighting)
        with seeded(config.seed):
            encoding = HashGridEncoding(n_levels=config.grid_levels, log2_table_size=15,
                                        base_resolution=GRID_BASE_RESOLUTION, finest_resolution=config.grid_finest)
            self.geometry = DensityField(encoding, blob_density=config.blob_density, blob_radius=config.blob_radius)
            self.background = WhiteBackground() if config.background == "white" else LearnedBackground()
        self.renderer = VolumeRenderer(self.geometry, self.background, config.n_samples, ambient=config.ambient).to(self.device)
        self.optimizer = torch.optim.Adam(self.renderer.parameters(), lr=config.lr, betas=(0.9, 0.99), eps=1e-15)
        self.step_count = 0
        self.history: dict[str, list] = {"step": [], "loss": [], "shading": [], "seconds": []}

    def focal(self, size: int) -> float:
        return focal_from_fov(self.config.fov_deg, size)

    def sample_cameras(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c2w [n,4,4], elevation [n], azimuth [n])`` of random orbit cameras."""
        lo, hi = self.config.elevation_range
        elevation = lo + (hi - lo) * torch.rand(n, generator=self.generator)
        azimuth = 360 * torch.rand(n, generator=self.generator)
        return orbit_camera(elevation, azimuth, self.config.radius).to(self.device), elevation, azimuth

    def light_centers(self, c2w: torch.Tensor) -> torch.Tensor:
        """``[B,3]`` directions that each view's light is drawn around (``config.light``)."""
        if self.config.light == "camera":
            return c2w[:, :3, 3]
        return torch.tensor(TOY_LIGHT_DIR, device=c2w.device).expand(len(c2w), 3)

    def _shading(self) -> str:
        if self.step_count < self.config.albedo_steps:
            return "albedo"
        modes, probs = zip(*self.config.shading_probs.items())
        return modes[torch.multinomial(torch.tensor(probs), 1, generator=self.generator).item()]

    def fraction_done(self, step: int) -> float:
        """How far ``step`` is through ``config.steps``, in [0,1]: what t and the learning rate anneal by."""
        return min(step / max(self.config.steps - 1, 1), 1.0)

    def schedule_learning_rate(self, done: float) -> None:
        """Set the rate for ``done`` in [0,1] of ``config.steps``: a cosine from ``lr`` to ``lr_end`` (constant if None)."""
        if self.config.lr_end is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = cosine_decay(self.config.lr, self.config.lr_end, done)

    def step(self) -> dict:
        """One SDS update from a random batch of cameras."""
        config = self.config
        done = self.fraction_done(self.step_count)
        self.schedule_learning_rate(done)
        c2w, elevation, azimuth = self.sample_cameras(config.batch_size)
        shading = self._shading()
        lights = random_light_dirs(self.light_centers(c2w), generator=self.generator) if shading != "albedo" else None
        out = self.renderer(c2w, config.render_size, self.focal(config.render_size), shading, lights,
                            generator=self.generator)
        sds = self.guidance(out["rgb"].clamp(0, 1), self.prompt(elevation, azimuth),
                            progress=done, generator=self.generator)
        loss = (sds.loss + config.lambda_sparsity * out["opacity"].sum()
                + config.lambda_opaque * opacity_entropy(out["opacity"]).sum())
        if "orientation" in out:
            loss = loss + config.lambda_orient * out["orientation"] * out["opacity"].numel()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step_count += 1
        return {"loss": sds.loss.item(), "shading": shading, "t": sds.t.tolist()}

    def fit(self, steps: int | None = None, max_seconds: float | None = None, callback=None, show_progress: bool = True
            ) -> dict[str, list]:
        """Run ``steps`` (default ``config.steps``) SDS updates, or until ``max_seconds``; returns ``history``."""
        steps = check_positive_int("steps", steps if steps is not None else self.config.steps)
        tic = time.perf_counter()
        offset = self.history["seconds"][-1] if self.history["seconds"] else 0.0
        for _ in progress(range(steps), desc="dreamfusion", disable=not show_progress):
            info = self.step()
            seconds = offset + time.perf_counter() - tic
            for key, value in (("step", self.step_count), ("loss", info["loss"]), ("shading", info["shading"]),
                               ("seconds", seconds)):
                self.history[key].append(value)
            if callback is not None:
                callback(self, info)
            if max_seconds is not None and seconds - offset >= max_seconds:
                break
        return self.history

    @torch.no_grad()
    def render(self, elevation, azimuth, size: int = 64, shading: str = "albedo") -> dict[str, torch.Tensor]:
        """Renders from orbit cameras at ``elevation``, ``azimuth`` (degrees, scalars or ``[B]``): ``rgb [B,3,H,W]``, ...

        Shaded modes light each view from the centre of ``config.light`` (no random offset)."""
        check_choice("shading", shading, SHADINGS)
        c2w = orbit_camera(elevation, azimuth, self.config.radius).to(self.device).reshape(-1, 4, 4)
        lights = torch.nn.functional.normalize(self.light_centers(c2w), dim=-1) if shading != "albedo" else None
        outs = [self.renderer(c[None], size, self.focal(size), shading, None if lights is None else lights[i:i + 1],
                              perturb=False) for i, c in enumerate(c2w)]
        return {key: torch.cat([o[key] for o in outs]).cpu() for key in ("rgb", "opacity", "depth")}

    def turntable(self, n_frames: int = 24, elevation: float = 15.0, size: int = 64, shading: str = "albedo") -> torch.Tensor:
        """``[F,3,H,W]`` frames evenly spaced in azimuth, starting at the front (azimuth 0)."""
        n_frames = check_positive_int("n_frames", n_frames)
        return self.render(torch.full((n_frames,), elevation), torch.arange(n_frames) * 360.0 / n_frames, size,
                           shading)["rgb"]

    @torch.no_grad()
    def export_mesh(self, path=None, resolution: int = 64, threshold: float = 5.0, min_piece: float = 0.05) -> trimesh.Trimesh:
        """Marching cubes on the density at ``threshold``, vertex colours from the albedo; optionally written to ``path`` (.glb, .obj, ...).

        Pieces with fewer faces than ``min_piece`` times the largest piece's are dropped: they are
        specks of the haze SDS leaves in empty space, not parts of the object.
        """
        min_piece = check_fraction("min_piece", min_piece)
        points = grid_points(resolution).reshape(-1, 3).to(self.device)
        density = torch.cat([self.geometry.density(chunk) for chunk in points.split(65536)]).cpu()
        mesh = extract_mesh(density.reshape(resolution, resolution, resolution), level=threshold, inside="above",
                            fill_interior=True)
        pieces = mesh.split(only_watertight=False)
        largest = max(len(piece.faces) for piece in pieces)
        mesh = trimesh.util.concatenate([piece for piece in pieces if len(piece.faces) >= min_piece * largest])
        vertices = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32).to(self.device)
        albedo = torch.cat([self.geometry(chunk)[1] for chunk in vertices.split(65536)]).cpu().numpy()
        mesh.visual.vertex_colors = np.concatenate([(albedo * 255).round(), np.full((len(albedo), 1), 255)], 1).astype(np.uint8)
        if path is not None:
            mesh.export(path)
        return mesh


def orbit_r_precision(run: DreamFusion, prompt: str, candidates: list[str], clip=None, n_views: int = 8,
                      elevation: float = 15.0) -> float:
    """Chapter 04's score: R-precision of ``n_views`` renders evenly spaced in azimuth at ``elevation``.

    Lit as the toy world lights its objects (lambertian, the fixed light from above), since that is
    what toy CLIP was trained on; unlit albedo looks flat to it, and DreamFusion's albedo is brighter
    than the colour seen under light, because the light darkens it during training.
    """
    n_views = check_positive_int("n_views", n_views)
    views = run.render(torch.full((n_views,), float(elevation)), torch.arange(n_views) * 360.0 / n_views, size=64,
                       shading="lambertian")["rgb"]
    return r_precision(views, [prompt] * n_views, candidates, clip)
