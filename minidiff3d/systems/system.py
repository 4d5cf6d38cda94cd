"""A text-to-3D system: parts composed into one optimisation, in threestudio's split without its registry.

    geometry    DensityField        hash-grid density + albedo, started from a blob
    material    Material            which shading each step uses, and where its light is
    background  SolidBackground     what transparent rays see (or a LearnedBackground)
    renderer    RayMarcher          the course's one marcher, over each ray's chord
    guidance    ScoreDistillation   any part with the guidance interface (``guidance.base``)
    prompt      PromptProcessor     the conditions the guidance reads, per camera

Each step draws random orbit cameras, renders, lets the guidance score the renders under the
prompt's conditions, adds the system's regularisers, takes an optimiser step, and gives the
guidance its ``update`` (a no-op for SDS, the LoRA's step for VSD).

``System(...)`` takes its parts, so any one can be swapped; ``System.from_config(run_config, pipe)``
builds them from a ``RunConfig`` (a method's preset, ``systems.PRESETS``).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from torch import nn

from ..cameras import Cameras, orbit_camera
from ..mesh import extract_mesh, grid_points, rgba
from ..metrics import front_view, psnr, r_precision
from ..runtime import progress, seeded
from ..shading import SHADINGS
from ..toyworld import render as toy_render
from ..training import cosine_decay
from ..validation import check_choice, check_fraction, check_images, check_positive_int, check_tensor
from .config import RunConfig, SystemConfig


def opacity_entropy(opacity: torch.Tensor) -> torch.Tensor:
    """Binary entropy (nats) of each ray's ``opacity`` (any shape, in [0,1]): 0 for empty or opaque, log 2 at one half.

    As a penalty it pushes half-transparent pixels to either side, and so clears haze.
    """
    p = opacity.clamp(1e-5, 1 - 1e-5)  # the slope, log((1 - p) / p), is infinite at 0 and 1
    return torch.special.entr(p) + torch.special.entr(1 - p)


class System:
    """A text-to-3D run: ``System.from_config(run_config("dreamfusion", "a red duck"), pipe).fit()``,
    then ``render``, ``turntable``, ``export_mesh``."""

    def __init__(self, geometry: nn.Module, material, background: nn.Module, renderer, guidance, prompt,
                 config: SystemConfig | None = None, device=None, run_config: RunConfig | None = None):
        self.config = config = config or SystemConfig()
        self.device = torch.device(device) if device is not None else next(geometry.parameters()).device
        self.geometry, self.background = geometry.to(self.device), background.to(self.device)
        self.material, self.renderer, self.guidance, self.prompt = material, renderer, guidance, prompt
        self.run_config = run_config  # what built it, if a config did (run.json records it)
        self.name = run_config.method if run_config else "system"  # the progress bar's
        # Every random number of a run comes from its own generator (the initial weights from its seed),
        # so the run is a function of the seed, whatever the caller draws before, during or after it.
        self.generator = torch.Generator().manual_seed(config.seed)
        # A part may ask for its own rates (Gaussians': one per kind of parameter) as multiples of the run's.
        groups = geometry.parameter_groups() if hasattr(geometry, "parameter_groups") else [{"params": [*geometry.parameters()]}]
        groups = [{"lr_scale": 1.0, **group} for group in [*groups, {"params": [*background.parameters()]}]]
        for group in groups:
            group["lr"] = config.lr * group["lr_scale"]
        self.optimizer = torch.optim.Adam(groups, lr=config.lr, betas=(0.9, 0.99), eps=1e-15)
        self.step_count = 0
        self.history: dict[str, list] = {"step": [], "loss": [], "shading": [], "seconds": []}

    @classmethod
    def from_config(cls, config: RunConfig, pipe) -> "System":
        """Build every part from ``config`` on ``pipe``'s device; the parts' initial weights come from the seed."""
        if not isinstance(config, RunConfig):
            raise TypeError(f"config: expected a RunConfig (systems.run_config), got {type(config).__name__}")
        prompt, guidance = config.prompt.build(pipe), build_guidance(config.guidance, pipe, config.system.seed)
        with seeded(config.system.seed):
            geometry, background = config.geometry.build(), config.background.build()
        return cls(geometry, config.material.build(), background, config.renderer.build(), guidance, prompt,
                   config.system, pipe.device, config)

    def sample_cameras(self, n: int) -> Cameras:
        """``n`` random orbit cameras: elevation uniform in ``config.elevation_range``, azimuth in [0, 360).

        With ``config.views_per_set = V > 1`` they come in sets of V, set after set, as a multi-view prior
        sees them: one elevation per set, azimuths evenly spaced from a random start.
        """
        views, lo, hi = self.config.views_per_set, *self.config.elevation_range
        if n % views:
            raise ValueError(f"n: expected whole sets of system.views_per_set={views} cameras, got {n}")
        sets = n // views
        elevation = (lo + (hi - lo) * torch.rand(sets, generator=self.generator)).repeat_interleave(views)
        start = 360 * torch.rand(sets, 1, generator=self.generator)
        azimuth = (start + torch.arange(views) * 360.0 / views).reshape(-1) % 360
        return Cameras.orbit(elevation, azimuth, self.config.radius, self.config.fov_deg, self.device)

    @property
    def total_steps(self) -> int:
        """The steps a whole run takes (``config.steps``): ``total_steps - step_count`` remain."""
        return self.config.steps

    def fraction_done(self, step: int) -> float:
        """How far ``step`` is through ``config.steps``, in [0,1]: what t and the learning rate anneal by."""
        return min(step / max(self.config.steps - 1, 1), 1.0)

    def schedule_learning_rate(self, done: float) -> None:
        """Set the rate for ``done`` in [0,1] of ``config.steps``: a cosine from ``lr`` to ``lr_end`` (constant if None),
        times each parameter group's ``lr_scale``."""
        if self.config.lr_end is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = cosine_decay(self.config.lr, self.config.lr_end, done) * group.get("lr_scale", 1.0)

    def set_lights(self, cameras: Cameras) -> torch.Tensor:
        """``[B,3]`` light directions of a training step, drawn from the run's generator: one per set of
        ``config.views_per_set`` cameras (the first's), since a set shows one object under one light."""
        views = self.config.views_per_set
        return self.material.light_dirs(cameras.c2w[::views], self.generator).repeat_interleave(views, 0)

    def render_views(self, cameras: Cameras, size: int, shading: str = "albedo", light_dirs: torch.Tensor | None = None,
                     perturb: bool = False) -> dict[str, torch.Tensor]:
        """The renderer's maps ``[B,C,H,W]`` of the scene from ``cameras`` (``perturb`` draws from the run's generator)."""
        return self.renderer.render(self.geometry, cameras.c2w, size, size, cameras.focal(size), self.background, shading,
                                    light_dirs, self.material.ambient, perturb, self.generator if perturb else None)

    def _descend(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def reference_loss(self) -> torch.Tensor:
        """Image-to-3D's reference view: the MSE of the lit render from the input's camera against the input image.

        The prompt must hold an input image (``guidance.zero123.ImagePrompt``). The render is lit as the
        material lights every view; with the toy world's own light, an object of the right albedo
        reproduces a toy-world photo exactly.
        """
        reference = getattr(self.prompt, "reference", None)
        if reference is None:
            raise ValueError(f"prompt: expected a prompt with an input image (ImagePrompt) for the reference view, "
                             f"got {type(self.prompt).__name__}")
        size = self.config.render_size
        cameras = Cameras.orbit(self.prompt.elevation, self.prompt.azimuth, self.config.radius, self.config.fov_deg,
                                self.device)
        out = self.render_views(cameras, size, "lambertian", self.material.light_dirs(cameras.c2w, self.generator),
                                perturb=True)
        return F.mse_loss(out["rgb"], reference(size).to(self.device))

    def step(self) -> dict:
        """One guided update from a random batch of cameras; returns the guidance loss, shading, t and any update logs."""
        config = self.config
        done = self.fraction_done(self.step_count)
        self.schedule_learning_rate(done)
        cameras = self.sample_cameras(config.batch_size)
        shading = self.material.choose(self.step_count, self.generator)
        lights = self.set_lights(cameras) if shading != "albedo" else None
        out = self.render_views(cameras, config.render_size, shading, lights, perturb=True)
        images, conditions = out["rgb"].clamp(0, 1), self.prompt.conditions(cameras)
        guided = self.guidance.loss(images, cameras, conditions, done, self.generator)
        loss = (guided.loss + config.lambda_sparsity * out["opacity"].sum()
                + config.lambda_opaque * opacity_entropy(out["opacity"]).sum())
        if "orientation" in out:
            loss = loss + config.lambda_orient * out["orientation"] * out["opacity"].numel()
        if "laplacian" in out:  # a mesh renderer's: the mesh it drew
            loss = loss + config.lambda_laplacian * out["laplacian"] + config.lambda_normal * out["normal_consistency"]
        if getattr(self.prompt, "reference_weight", 0.0):  # an input image to hold (image-to-3D)
            loss = loss + self.prompt.reference_weight * self.reference_loss()
        self._descend(loss)
        logs = self.guidance.update(images.detach(), cameras, conditions, done, self.generator)
        self.step_count += 1
        return {"loss": guided.loss.item(), "shading": shading, "t": guided.t.tolist(), **logs}

    def fit(self, steps: int | None = None, max_seconds: float | None = None, callback=None, show_progress: bool = True
            ) -> dict[str, list]:
        """Run ``steps`` updates (default: all that remain of ``config.steps``, so a resumed run ends where a whole
        one would), or until ``max_seconds``; returns ``history``: per step its ``step``, guidance ``loss``,
        ``shading``, ``seconds`` since the start, and what the guidance's ``update`` logged (VSD: ``lora_loss``).

        ``callback(system, info)`` runs after each step; the progress bar shows the guidance loss."""
        steps = self.total_steps - self.step_count if steps is None else check_positive_int("steps", steps)
        tic = time.perf_counter()
        offset = self.history["seconds"][-1] if self.history["seconds"] else 0.0
        bar = progress(range(max(steps, 0)), desc=self.name, disable=not show_progress)
        for _ in bar:
            info = self.step()
            seconds = offset + time.perf_counter() - tic
            logged = {k: v for k, v in info.items() if k != "t"}  # the guidance's update logs too (VSD's lora_loss)
            for key, value in {"step": self.step_count, **logged, "seconds": seconds}.items():
                self.history.setdefault(key, []).append(value)
            bar.set_postfix(loss=f"{info['loss']:.3g}", refresh=False)
            if callback is not None:
                callback(self, info)
            if max_seconds is not None and seconds - offset >= max_seconds:
                break
        return self.history

    def fit_images(self, images: torch.Tensor, cameras: Cameras, steps: int | None = None) -> list[float]:
        """The photometric control: fit the scene by MSE to ``images [V,3,H,W]`` seen from ``cameras`` (V of them).

        The same field, optimiser, learning-rate schedule, renderer and step count as ``fit``, every
        render lit from the material's light (lambertian), one random view a step. It separates what
        the field can hold from what the guidance finds. Returns the loss per step.
        """
        images = check_images("images", images)
        check_tensor("images", images, shape=[len(cameras), 3, None, None])
        steps = check_positive_int("steps", steps if steps is not None else self.config.steps)
        losses = []
        for step in range(steps):
            self.schedule_learning_rate(self.fraction_done(step))
            losses.append(self.photometric_step(images, cameras))
        return losses

    def photometric_step(self, images: torch.Tensor, cameras: Cameras) -> float:
        """One MSE step towards a random one of ``images [V,3,H,W]`` (seen from ``cameras``), rendered lit
        (lambertian) at its size; returns the loss."""
        i = torch.randint(len(cameras), (1,), generator=self.generator).item()
        view = cameras[i]
        lights = self.material.light_dirs(view.c2w)
        rendered = self.render_views(view, images.shape[-1], "lambertian", lights, perturb=True)["rgb"]
        loss = (rendered - images[i:i + 1].to(self.device)).pow(2).mean()
        self._descend(loss)
        return loss.item()

    def close(self) -> None:
        """Give the pipeline back as it was lent (VSD removes its LoRA); the system renders and exports still."""
        self.guidance.close()

    def __enter__(self) -> "System":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def state_dict(self) -> dict:
        """Everything a run needs to continue exactly: the learned parts, the optimiser, the step and the generator."""
        return {"geometry": self.geometry.state_dict(), "background": self.background.state_dict(),
                "optimizer": self.optimizer.state_dict(), "guidance": self.guidance.state_dict(),
                "step_count": self.step_count, "generator": self.generator.get_state(),
                "history": copy.deepcopy(self.history)}  # a snapshot: the live log grows as the run goes on

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``: the next ``step`` is the one the saved run would have taken."""
        self.geometry.load_state_dict(state["geometry"])
        self.background.load_state_dict(state["background"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.guidance.load_state_dict(state["guidance"])
        self.step_count, self.history = int(state["step_count"]), copy.deepcopy(state["history"])
        self.generator.set_state(state["generator"])

    @torch.no_grad()
    def render(self, elevation, azimuth, size: int = 64, shading: str = "albedo") -> dict[str, torch.Tensor]:
        """Renders from orbit cameras at ``elevation``, ``azimuth`` (degrees, scalars or ``[B]``): ``rgb [B,3,H,W]``,
        ``opacity`` and ``depth [B,1,H,W]``, on the CPU. Shaded modes light each view from the centre of the
        material's light (no random offset)."""
        check_choice("shading", shading, SHADINGS)
        cameras = Cameras.orbit(elevation, azimuth, self.config.radius, self.config.fov_deg, self.device)
        lights = self.material.light_dirs(cameras.c2w) if shading != "albedo" else None
        outs = [self.render_views(cameras[i], size, shading, None if lights is None else lights[i:i + 1])
                for i in range(len(cameras))]
        return {key: torch.cat([o[key] for o in outs]).cpu() for key in ("rgb", "opacity", "depth")}

    def turntable(self, n_frames: int = 24, elevation: float = 15.0, size: int = 64, shading: str = "albedo") -> torch.Tensor:
        """``[F,3,H,W]`` frames evenly spaced in azimuth, starting at the front (azimuth 0)."""
        n_frames = check_positive_int("n_frames", n_frames)
        return self.render(torch.full((n_frames,), float(elevation)), torch.arange(n_frames) * 360.0 / n_frames, size,
                           shading)["rgb"]

    @torch.no_grad()
    def export_mesh(self, path=None, resolution: int = 64, threshold: float = 5.0, min_piece: float = 0.05) -> trimesh.Trimesh:
        """Marching cubes on the density at ``threshold``, vertex colours from the albedo; optionally written to ``path``
        (.glb, .obj, ...). Pieces below ``min_piece`` of the largest are dropped (``coloured_mesh``)."""
        points = grid_points(resolution).reshape(-1, 3).to(self.device)
        density = torch.cat([self.geometry.density(chunk) for chunk in points.split(65536)]).cpu()
        mesh = extract_mesh(density.reshape(resolution, resolution, resolution), level=threshold, inside="above",
                            fill_interior=True)
        return coloured_mesh(mesh, self.geometry, path, min_piece)


@torch.no_grad()
def coloured_mesh(mesh: trimesh.Trimesh, color_field: nn.Module, path=None, min_piece: float = 0.05) -> trimesh.Trimesh:
    """``mesh`` without its specks, its vertices coloured by ``color_field(points)["rgb"]``; written to ``path`` if given.

    Pieces with fewer faces than ``min_piece`` times the largest piece's are dropped: they are
    specks of the haze SDS leaves in empty space, not parts of the object.
    """
    min_piece = check_fraction("min_piece", min_piece)
    pieces = mesh.split(only_watertight=False)
    largest = max(len(piece.faces) for piece in pieces)
    mesh = trimesh.util.concatenate([piece for piece in pieces if len(piece.faces) >= min_piece * largest])
    device = next(color_field.parameters()).device
    vertices = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32).to(device)
    albedo = torch.cat([color_field(chunk)["rgb"] for chunk in vertices.split(65536)]).clamp(0, 1).cpu().numpy()
    mesh.visual.vertex_colors = rgba(albedo)
    if path is not None:
        mesh.export(path)
    return mesh


def orbit_r_precision(run: System, prompt: str, candidates: list[str], clip=None, n_views: int = 8,
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


def back_view(run: System, prompt: str, clip=None, n_views: int = 8, elevation: float = 15.0) -> torch.Tensor:
    """``[1,3,64,64]``: the lit render of ``run``'s object from behind, behind being opposite its front, the one of
    ``n_views`` lit views evenly around it that CLIP most takes for "<prompt>, front view" (``metrics.front_view``).

    Not the world's azimuth 180: a prior with relative cameras (toy-mvdream's) turns the object's front anywhere.
    A Janus object has a second face there (``metrics.janus_rate`` on this view).
    """
    azimuths = torch.arange(check_positive_int("n_views", n_views)) * 360.0 / n_views
    views = run.render(torch.full((n_views,), float(elevation)), azimuths, size=64, shading="lambertian")["rgb"]
    front = azimuths[front_view(views, prompt, clip)].item()
    return run.render(float(elevation), front + 180.0, size=64, shading="lambertian")["rgb"]


def build_guidance(config, pipe, seed: int):
    """The guidance of ``config`` on ``pipe``, any initial weights it has (VSD's LoRA) drawn from ``seed``."""
    with seeded(seed):
        return config.build(pipe)


def view_psnr(run: System, truth, elevation: float = 15.0, azimuths=(45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0),
              size: int = 64) -> float:
    """Image-to-3D's score: mean PSNR (dB) of ``run``'s lit renders against the toy world's renders of ``truth`` (a
    ``toyworld`` object) from the same cameras, by default the seven turns of 45° that the input (azimuth 0) did not
    show, all at ``elevation``."""
    azimuths = torch.as_tensor(azimuths, dtype=torch.float32).reshape(-1)
    elevations = torch.full_like(azimuths, float(elevation))
    renders = run.render(elevations, azimuths, size=size, shading="lambertian")["rgb"].cpu()
    scores = [psnr(image, toy_render(truth, orbit_camera(float(elevation), float(azimuth), run.config.radius), size, size,
                                     run.config.fov_deg, antialias=2)["image"].permute(2, 0, 1)).item()
              for image, azimuth in zip(renders, azimuths.tolist())]
    return sum(scores) / len(scores)
