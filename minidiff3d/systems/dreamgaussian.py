"""DreamGaussian (Tang et al., 2024) as two stages: score distillation into 3-D Gaussians, then a textured mesh.

    stage 1   Gaussians + SplatRenderer, SDS from toy SD (or toy-zero123 from an image), 3DGS's densify and prune
    stage 2   marching cubes on the Gaussians' density (``Gaussians.density_grid``), the largest piece kept, its
              vertex colours from the Gaussians, then fitted through chapter 06's rasterizer to SDEdit-refined
              renders of the Gaussians from a ring of cameras (the prior sharpens what stage 1 drew)

Stage 1 is an ordinary ``System`` whose geometry is ``Gaussians``: ``GaussianSystem`` only adds 3DGS's
adaptive density control after each update. Stage 2 has no random cameras and no guidance gradient:
its targets are made once, and the texture is a least-squares fit to them, which is why it is fast.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from .. import raster
from ..cameras import Cameras
from ..mesh import extract_mesh, mesh_tensors, rgba
from ..scene.gaussians import NAMES, resize
from ..scene.mesh_renderer import render_vertex_colors
from .config import DensifyConfig, DreamGaussianConfig, SystemConfig, TextureConfig
from .system import System


class GaussianSystem(System):
    """A ``System`` on ``Gaussians``: after every update (a guided ``step`` or a ``photometric_step``) the image-space
    gradients are accumulated, and on ``densify``'s schedule the Gaussians are cloned, split and pruned."""

    def __init__(self, *parts, densify: DensifyConfig | None = None, **options):
        super().__init__(*parts, **options)
        self.densify = densify or DensifyConfig()
        self.updates = 0
        self.history.setdefault("gaussians", [])

    @classmethod
    def from_config(cls, config: DreamGaussianConfig, pipe) -> "GaussianSystem":
        """Every part built as ``System.from_config`` builds them, densified as ``config.densify`` says."""
        system = super().from_config(config, pipe)
        system.densify = config.densify
        return system

    def _descend(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.geometry.accumulate()
        self.optimizer.step()
        self.updates += 1
        if self.densify.due(self.updates) and len(self.geometry) < self.densify.max_count:
            d = self.densify
            self.geometry.densify(self.optimizer, d.grad_threshold, d.extent, d.percent_dense, d.min_opacity,
                                  self.generator)

    def step(self) -> dict:
        """``System.step``, logging the number of Gaussians after it."""
        return {**super().step(), "gaussians": len(self.geometry)}

    def state_dict(self) -> dict:
        """``System.state_dict``, the updates counted and the gradient statistics the next densification reads."""
        g = self.geometry
        return {**super().state_dict(), "updates": self.updates,
                "densify_statistics": {"grad_sum": g.grad_sum.clone(), "seen": g.seen.clone()}}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``, however many Gaussians it holds."""
        saved = {name: state["geometry"][name] for name in NAMES}
        resize(self.geometry, self.optimizer, torch.zeros(0, dtype=torch.long), saved)  # the saved count, then the values
        super().load_state_dict(state)
        self.updates = int(state["updates"])
        statistics = state.get("densify_statistics")
        if statistics is None:  # a checkpoint saved before the statistics were: they start again, as they did then
            self.geometry.reset_statistics()
        else:
            self.geometry.grad_sum, self.geometry.seen = (statistics[k].clone().to(self.device) for k in ("grad_sum", "seen"))

    @torch.no_grad()
    def export_mesh(self, path=None, resolution: int = 64, threshold: float = 0.1) -> trimesh.Trimesh:
        """Marching cubes on the Gaussians' density at ``threshold``, the largest piece only, vertex colours from the
        Gaussians' colours on the same grid (``gaussians_mesh``); written to ``path`` if given."""
        mesh = gaussians_mesh(self.geometry, resolution, threshold)
        if path is not None:
            mesh.export(path)
        return mesh


@torch.no_grad()
def gaussians_mesh(gaussians, resolution: int = 64, level: float = 0.1) -> trimesh.Trimesh:
    """The surface where the Gaussians' density (``density_grid``) crosses ``level``, interior cavities filled, as one
    watertight piece (the largest; the others are floaters), vertex-coloured by the density-weighted colour grid."""
    density, color = (grid.cpu() for grid in gaussians.density_grid(resolution))  # marching cubes runs on the CPU
    mesh = extract_mesh(density, level=level, inside="above", fill_interior=True)
    pieces = mesh.split(only_watertight=False)
    mesh = max(pieces, key=lambda piece: len(piece.faces))
    mesh.metadata["pieces"] = len(pieces)
    # Trilinear colour at each vertex: grid_sample's (x, y, z) indexes the last, middle and first axis.
    where = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32).flip(-1).view(1, -1, 1, 1, 3)
    rgb = F.grid_sample(color.permute(3, 0, 1, 2)[None], where, align_corners=True)[0, :, :, 0, 0].T.clamp(0, 1)
    mesh.visual.vertex_colors = rgba(rgb)
    return mesh


def ring_cameras(texture: TextureConfig, system: SystemConfig, device=None) -> Cameras:
    """Stage 2's ring: ``texture.azimuths`` turns at each of ``texture.elevations``, on the system's orbit."""
    azimuths = torch.arange(texture.azimuths) * 360.0 / texture.azimuths
    elevations = torch.tensor(texture.elevations, dtype=torch.float32)
    return Cameras.orbit(elevations.repeat_interleave(len(azimuths)), azimuths.repeat(len(elevations)), system.radius,
                         system.fov_deg, device)


class DreamGaussian:
    """``DreamGaussian.from_config(run_config("dreamgaussian", "a blue cone"), pipe).fit()``: stage 1 (``gaussians``, a
    ``GaussianSystem``) for ``system.steps``, then stage 2 (``refine_texture``) once; then ``export_mesh`` writes the
    textured mesh, ``render`` and ``turntable`` show the Gaussians and ``render_mesh`` the mesh."""

    def __init__(self, gaussians: GaussianSystem, texture: TextureConfig, run_config: DreamGaussianConfig | None = None):
        self.gaussians, self.texture_config, self.run_config = gaussians, texture, run_config
        self.mesh: trimesh.Trimesh | None = None
        self.texture_history: dict[str, list] = {}

    @classmethod
    def from_config(cls, config: DreamGaussianConfig, pipe) -> "DreamGaussian":
        if not isinstance(config, DreamGaussianConfig):
            raise TypeError(f"config: expected a DreamGaussianConfig (systems.run_config('dreamgaussian')), "
                            f"got {type(config).__name__}")
        return cls(GaussianSystem.from_config(config, pipe), config.texture, config)

    config = property(lambda self: self.gaussians.config)
    total_steps = property(lambda self: self.gaussians.total_steps)
    step_count = property(lambda self: self.gaussians.step_count)

    @property
    def history(self) -> dict[str, list]:
        """Stage 1's history (``System.fit``'s keys and ``gaussians``); stage 2's is ``texture_history``."""
        return self.gaussians.history

    def fit(self, steps: int | None = None, max_seconds: float | None = None, callback=None, show_progress: bool = True
            ) -> dict[str, list]:
        """Stage 1 for ``steps`` (default: all that remain), then, once it is done, stage 2; returns ``history``."""
        left = self.gaussians.total_steps - self.gaussians.step_count
        steps = left if steps is None else steps
        if steps > 0 and left > 0:
            self.gaussians.fit(min(steps, left), max_seconds, callback, show_progress)
        if self.gaussians.step_count >= self.gaussians.total_steps and self.mesh is None:
            self.refine_texture()
        return self.history

    def refine_texture(self) -> trimesh.Trimesh:
        """Stage 2 (the module docstring): the mesh, its SDEdit targets, and the vertex colours' fit; returns the mesh
        and logs ``texture_history`` (``loss`` per step, ``seconds``, ``pieces`` before the largest was kept)."""
        tic, config, system = time.perf_counter(), self.texture_config, self.gaussians
        mesh = gaussians_mesh(system.geometry, config.resolution, config.level)
        cameras = ring_cameras(config, system.config, system.device)
        size = config.render_size
        with torch.no_grad():
            renders = system.render_views(cameras, size)["rgb"].clamp(0, 1)
            targets = system.guidance.refine(renders, system.prompt.conditions(cameras), config.strength,
                                             config.num_inference_steps, system.generator)
            targets = F.interpolate(targets, (size, size), mode="area")
        vertices, faces, start = mesh_tensors(mesh)
        logits = torch.logit(start.clamp(0.01, 0.99)).requires_grad_(True)
        clip = raster.project(vertices, cameras.c2w.cpu(), size, size, cameras.focal(size))
        surface = raster.rasterize(clip, faces, size, size)  # the geometry is fixed: rasterized once, for every step
        # Only the pixels the mesh covers depend on its colours, and the silhouette is fixed: no antialiasing (which
        # would cost ten times the rest of a step), the loss over covered pixels alone.
        covered = surface["triangle_id"] >= 0
        optimizer = torch.optim.Adam([logits], lr=config.lr)
        goal = targets.cpu().permute(0, 2, 3, 1)[covered]
        losses = []
        for _ in range(config.steps):
            loss = F.mse_loss(raster.interpolate(torch.sigmoid(logits), surface, faces)[covered], goal)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        mesh.visual.vertex_colors = rgba(torch.sigmoid(logits.detach()))
        self.mesh, self.targets = mesh, targets.cpu()
        self.texture_history = {"loss": losses, "seconds": time.perf_counter() - tic, "pieces": mesh.metadata["pieces"]}
        return mesh

    def render(self, elevation, azimuth, size: int = 64, shading: str = "albedo") -> dict[str, torch.Tensor]:
        """Stage 1's Gaussians from orbit cameras (``System.render``; Gaussians are unlit, whatever ``shading``)."""
        return self.gaussians.render(elevation, azimuth, size, shading)

    def turntable(self, n_frames: int = 24, elevation: float = 15.0, size: int = 64, shading: str = "albedo"):
        return self.gaussians.turntable(n_frames, elevation, size, shading)

    def render_mesh(self, elevation, azimuth, size: int = 64) -> torch.Tensor:
        """``[B,3,H,W]``: stage 2's textured mesh from orbit cameras, as a viewer shows its vertex colours (on white)."""
        if self.mesh is None:
            raise ValueError("render_mesh: stage 2 has not run yet (fit() runs it after stage 1's steps, or call "
                             "refine_texture())")
        cameras = Cameras.orbit(elevation, azimuth, self.config.radius, self.config.fov_deg)
        return render_vertex_colors(*mesh_tensors(self.mesh), cameras.c2w, size, size, cameras.focal(size))

    def export_mesh(self, path=None, **options) -> trimesh.Trimesh:
        """Stage 2's textured mesh (run now if stage 1 is done and it has not run; before that, stage 1's untextured
        one, ``GaussianSystem.export_mesh`` with ``options``); written to ``path`` if given."""
        if self.mesh is None and self.step_count >= self.total_steps:
            self.refine_texture()
        if self.mesh is None:
            return self.gaussians.export_mesh(path, **options)
        if path is not None:
            self.mesh.export(path)
        return self.mesh

    def state_dict(self) -> dict:
        """Stage 1's state, and stage 2's textured mesh and log once it has run."""
        mesh = None if self.mesh is None else {"vertices": np.asarray(self.mesh.vertices), "faces": np.asarray(self.mesh.faces),
                                               "vertex_colors": np.asarray(self.mesh.visual.vertex_colors),
                                               "pieces": self.mesh.metadata["pieces"], "targets": self.targets}
        return {"gaussians": self.gaussians.state_dict(), "mesh": mesh, "texture_history": self.texture_history}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``: stage 1 where it stood, stage 2's mesh if it had run."""
        self.gaussians.load_state_dict(state["gaussians"])
        self.mesh, self.texture_history = None, state["texture_history"]
        saved = state["mesh"]
        if saved is not None:
            self.mesh = trimesh.Trimesh(saved["vertices"], saved["faces"], vertex_colors=saved["vertex_colors"],
                                        process=False)
            self.mesh.metadata["pieces"], self.targets = saved["pieces"], saved["targets"]

    def close(self) -> None:
        self.gaussians.close()

    def __enter__(self) -> "DreamGaussian":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["DreamGaussian", "GaussianSystem", "gaussians_mesh", "ring_cameras"]
