"""Magic3D's two stages as one run: a coarse ``System`` on a density field, then a fine ``System`` on a mesh made from it.

    coarse   DensityField + RayMarcher at ``system.render_size`` (32), SDS over t in [0.02, 0.98] -> [0.02, 0.6]
    fine     DMTetGeometry + MeshRenderer at ``fine.render_size`` (64), SDS over t in [0.02, 0.5],
             the mesh's Laplacian and normal consistency; the coarse network stays its colour field

The switch happens once the coarse stage has taken all its steps: the DMTet grid's signed distances
are read off the coarse density at ``fine.geometry.iso_level`` (``scene.dmtet_geometry``), and the
fine stage continues the coarse stage's stream of random numbers, cameras and material. Both stages
are ordinary systems of parts; this class only sequences them, as threestudio runs Magic3D's coarse
and refine configs one after the other.
"""

from __future__ import annotations

import torch
import trimesh

from .config import CoarseToFineConfig, FineStageConfig
from .system import System, build_guidance, coloured_mesh


class CoarseToFine:
    """``CoarseToFine.from_config(run_config("magic3d", "a blue cube"), pipe).fit()``, then ``render``, ``turntable``,
    ``export_mesh`` of the stage it has reached (``stage``: ``"coarse"`` or ``"fine"``)."""

    def __init__(self, coarse: System, fine: FineStageConfig, pipe, run_config: CoarseToFineConfig | None = None):
        if not isinstance(fine, FineStageConfig):
            raise TypeError(f"fine: expected a FineStageConfig, got {type(fine).__name__}")
        self.coarse, self.fine_config, self.pipe, self.run_config = coarse, fine, pipe, run_config
        self.fine: System | None = None
        coarse.name = f"{coarse.name} coarse"

    @classmethod
    def from_config(cls, config: CoarseToFineConfig, pipe) -> "CoarseToFine":
        if not isinstance(config, CoarseToFineConfig):
            raise TypeError(f"config: expected a CoarseToFineConfig (systems.run_config('magic3d')), got {type(config).__name__}")
        return cls(System.from_config(config, pipe), config.fine, pipe, config)

    @property
    def stage(self) -> str:
        return "coarse" if self.fine is None else "fine"

    @property
    def current(self) -> System:
        """The stage being optimised, or the last one: what ``render`` and ``export_mesh`` show."""
        return self.coarse if self.fine is None else self.fine

    @property
    def config(self):
        return self.current.config

    @property
    def total_steps(self) -> int:
        return self.coarse.total_steps + self.fine_config.steps

    @property
    def step_count(self) -> int:
        return self.coarse.step_count + (self.fine.step_count if self.fine is not None else 0)

    @property
    def history(self) -> dict[str, list]:
        """Both stages' histories end to end (``System.fit``'s keys), with ``stage`` per step and the fine stage's
        ``step`` and ``seconds`` counted on from the coarse stage's."""
        merged = {key: list(values) for key, values in self.coarse.history.items()}
        merged["stage"] = ["coarse"] * len(merged["step"])
        if self.fine is not None:
            offset = {"step": self.coarse.step_count, "seconds": merged["seconds"][-1] if merged["seconds"] else 0.0}
            for key, values in self.fine.history.items():
                shifted = [v + offset[key] for v in values] if key in offset else values
                merged.setdefault(key, [None] * len(merged["stage"])).extend(shifted)
            merged["stage"] += ["fine"] * len(self.fine.history["step"])
        return merged

    def start_fine(self) -> System:
        """Build the fine stage from the coarse one as it stands (called by ``fit`` when the coarse steps are done)."""
        if self.fine is not None:
            return self.fine
        coarse, config = self.coarse, self.fine_config
        geometry = config.geometry.build(coarse.geometry)
        if not (geometry.sdf < 0).any():
            with torch.no_grad():
                peak = coarse.geometry.density(geometry.grid_vertices).max().item()
            raise ValueError(f"fine.geometry.iso_level: expected the coarse density to reach {config.geometry.iso_level} "
                             f"somewhere, so that there is a surface to mesh; it peaks near {peak:.3g} on the grid "
                             f"(run the coarse stage longer, or lower the level)")
        self.fine = System(geometry, coarse.material, coarse.background, config.renderer.build(),
                           build_guidance(config.guidance, self.pipe, coarse.config.seed),
                           coarse.prompt, config.system(coarse.config), coarse.device, self.run_config)
        self.fine.name = f"{self.fine.name} fine"
        self.fine.generator.set_state(coarse.generator.get_state())  # one stream of random numbers for the whole run
        return self.fine

    def fit(self, steps: int | None = None, max_seconds: float | None = None, callback=None, show_progress: bool = True
            ) -> dict[str, list]:
        """Take ``steps`` (default: all that remain) of the run, the coarse stage's first, or stop after ``max_seconds``;
        returns the merged ``history``. ``callback(system, info)`` gets the stage's ``System``."""
        steps = self.total_steps - self.step_count if steps is None else steps
        seconds_at_start = self.history["seconds"][-1] if self.history["seconds"] else 0.0
        coarse_left = self.coarse.total_steps - self.coarse.step_count
        if coarse_left > 0 and steps > 0:
            self.coarse.fit(min(steps, coarse_left), max_seconds, callback, show_progress)
            steps -= self.coarse.step_count - (self.coarse.total_steps - coarse_left)
        if steps > 0 and self.coarse.step_count >= self.coarse.total_steps:
            spent = self.history["seconds"][-1] - seconds_at_start if self.history["seconds"] else 0.0
            if max_seconds is None or spent < max_seconds:
                self.start_fine().fit(steps, None if max_seconds is None else max_seconds - spent, callback, show_progress)
        return self.history

    def render(self, elevation, azimuth, size: int = 64, shading: str = "albedo"):
        return self.current.render(elevation, azimuth, size, shading)

    def turntable(self, n_frames: int = 24, elevation: float = 15.0, size: int = 64, shading: str = "albedo"):
        return self.current.turntable(n_frames, elevation, size, shading)

    def export_mesh(self, path=None, min_piece: float = 0.05) -> trimesh.Trimesh:
        """The fine stage's DMTet mesh with vertex colours from its colour field (the coarse stage's marching-cubes
        mesh before the switch), without specks below ``min_piece`` of the largest piece; written to ``path`` if given."""
        if self.fine is None:
            return self.coarse.export_mesh(path, min_piece=min_piece)
        geometry = self.fine.geometry
        return coloured_mesh(geometry.to_trimesh(), geometry.color_field, path, min_piece)

    def state_dict(self) -> dict:
        return {"coarse": self.coarse.state_dict(), "fine": None if self.fine is None else self.fine.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``, in whichever stage it was saved."""
        self.coarse.load_state_dict(state["coarse"])
        self.fine = None
        if state["fine"] is not None:
            self.start_fine().load_state_dict(state["fine"])

    def close(self) -> None:
        for stage in (self.coarse, self.fine):
            if stage is not None:
                stage.close()

    def __enter__(self) -> "CoarseToFine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
