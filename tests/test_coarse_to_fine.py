"""Magic3D's two-stage run: the preset and its config, the switch from density field to DMTet mesh, resuming across
the switch, and the vertex-coloured export against the colour field it stands for."""

import dataclasses

import numpy as np
import pytest
import torch
import trimesh

from minidiff3d.cameras import Cameras
from minidiff3d.config import to_dict
from minidiff3d.dmtet import tet_grid
from minidiff3d.marcher import SolidBackground
from minidiff3d.metrics import psnr
from minidiff3d.priors import tiny_stable_diffusion
from minidiff3d.scene import DMTetGeometry, MeshRenderer
from minidiff3d.scene.mesh_renderer import render_vertex_colors
from minidiff3d.systems import (CoarseToFine, CoarseToFineConfig, FineStageConfig, System, coloured_mesh, load_run_config,
                                run_config)

SMALL = {"system.steps": 3, "system.render_size": 16, "renderer.n_samples": 16, "geometry.blob_density": 10.0,
         "fine.steps": 3, "fine.render_size": 16, "fine.geometry.resolution": 10}


@pytest.fixture(scope="module")
def tiny_pipe():
    pipe = tiny_stable_diffusion()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def small(**overrides) -> CoarseToFineConfig:
    return run_config("magic3d", "a red duck", {**SMALL, **overrides})


def test_the_preset_is_the_coarse_run_plus_a_fine_stage_and_round_trips_through_json():
    config, dreamfusion = run_config("magic3d", "a blue cube"), run_config("dreamfusion", "a blue cube")
    assert isinstance(config, CoarseToFineConfig) and config.method == "magic3d"
    assert config.system.steps == dreamfusion.system.steps // 2 and config.guidance == dreamfusion.guidance
    assert config.fine.render_size == 2 * config.system.render_size and config.fine.guidance.t_range == (0.02, 0.5)
    fine_system = config.fine.system(config.system)
    assert (fine_system.lambda_sparsity, fine_system.steps, fine_system.seed) == (0.0, config.fine.steps, config.system.seed)
    again = load_run_config(to_dict(run_config("magic3d", "a blue cube", {"fine.steps": 7, "fine.geometry.resolution": 24})))
    assert isinstance(again, CoarseToFineConfig) and (again.fine.steps, again.fine.geometry.resolution) == (7, 24)
    assert run_config("magic3d", quick=True).fine.steps < config.fine.steps
    for key, value, message in (("fine.steps", 0, "fine.steps"), ("fine.geometry.resolution", -1, "fine.geometry.resolution"),
                                ("fine.guidance.t_range", [0.5, 0.2], "guidance.t_range"), ("fine.lr", 0.0, "fine.lr")):
        with pytest.raises(ValueError, match=message):
            run_config("magic3d", overrides={key: value})
    with pytest.raises(TypeError, match="fine: expected a FineStageConfig"):
        CoarseToFine(None, {"steps": 3}, None)


def test_both_stages_run_and_the_first_mesh_lies_on_the_coarse_density_at_the_iso_level(tiny_pipe):
    run = small().build(tiny_pipe)
    assert isinstance(run, CoarseToFine) and run.total_steps == 6
    run.fit(2, show_progress=False)
    assert run.stage == "coarse" and run.step_count == 2
    run.fit(show_progress=False)
    assert run.stage == "fine" and run.step_count == 6 and run.fine.step_count == 3
    history = run.history
    assert history["step"] == [1, 2, 3, 4, 5, 6] and history["stage"] == ["coarse"] * 3 + ["fine"] * 3
    assert all(a < b for a, b in zip(history["seconds"], history["seconds"][1:]))
    assert run.fine.guidance.t_range == (0.02, 0.5) and run.fine.config.render_size == 16
    assert run.fine.geometry.color_field is run.coarse.geometry  # Magic3D keeps the coarse network as the colour

    # A freshly built fine stage: marching tetrahedra on the SDF read off the coarse density cuts where σ = iso level.
    coarse_only = small().build(tiny_pipe)
    coarse_only.fit(3, show_progress=False)
    vertices, faces = coarse_only.start_fine().geometry.mesh()
    assert len(faces) > 0
    density = coarse_only.coarse.geometry.density(vertices.detach())
    level = coarse_only.fine_config.geometry.iso_level
    # within 0.5 of the level on a field that spans 0 to about 10: the SDF is first-order, exact only on a linear field
    assert (density - level).abs().median() < 0.5, density


def test_a_run_interrupted_in_either_stage_resumes_to_the_uninterrupted_result(tiny_pipe):
    whole = small().build(tiny_pipe)
    whole.fit(show_progress=False)
    for stop in (2, 4):  # in the coarse stage, and in the fine one
        part = small().build(tiny_pipe)
        part.fit(stop, show_progress=False)
        state = part.state_dict()
        resumed = small().build(tiny_pipe)
        resumed.load_state_dict(state)
        assert resumed.stage == part.stage and resumed.step_count == stop
        resumed.fit(show_progress=False)
        assert resumed.history["step"] == whole.history["step"] and resumed.history["loss"] == whole.history["loss"]
        for a, b in zip(whole.fine.geometry.parameters(), resumed.fine.geometry.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_fine_stage_refuses_a_coarse_field_with_no_surface_at_the_iso_level(tiny_pipe):
    run = small(**{"fine.geometry.iso_level": 1e4}).build(tiny_pipe)
    with pytest.raises(ValueError, match="fine.geometry.iso_level: expected the coarse density to reach 10000"):
        run.fit(show_progress=False)


def test_the_export_is_a_vertex_coloured_glb_that_looks_like_the_fields_colours(tiny_pipe, tmp_path):
    run = small().build(tiny_pipe)
    run.fit(show_progress=False)
    mesh = run.export_mesh(tmp_path / "duck.glb")
    loaded = trimesh.load(tmp_path / "duck.glb", force="mesh")
    assert len(loaded.faces) == len(mesh.faces) > 0 and loaded.visual.vertex_colors.shape == (len(loaded.vertices), 4)
    expected = run.fine.geometry.color_field(torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32))["rgb"]
    assert np.abs(mesh.visual.vertex_colors[:, :3] / 255 - expected.detach().numpy()).max() <= 0.5 / 255 + 1e-6


class Waves(torch.nn.Module):
    """A colour that varies faster than the linear interpolation across one triangle can follow exactly."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a parameter, so that the export finds its device

    def forward(self, points, directions=None):
        return {"rgb": 0.5 + 0.4 * torch.sin(6 * points + torch.tensor([0.0, 2.0, 4.0]))}


@pytest.mark.parametrize("resolution,bar", [(32, 40.0)])  # measured 60.8 dB
def test_vertex_colours_reproduce_the_per_pixel_colour_field(resolution, bar):
    # Why a GLB with vertex colours is enough: at the fine stage's mesh density the colour interpolated between
    # vertices is within `bar` dB of the colour field queried at every pixel, which is what SDS was shown.
    grid = tet_grid(resolution)
    geometry = DMTetGeometry(grid.vertices.norm(dim=-1) - 0.6, Waves(), resolution)
    mesh = coloured_mesh(geometry.to_trimesh(), geometry.color_field)
    cameras = Cameras.orbit(torch.tensor([15.0, 15.0, 60.0]), torch.tensor([0.0, 120.0, 240.0]))
    size = 64
    per_pixel = MeshRenderer().render(geometry, cameras.c2w, size, size, cameras.focal(size), SolidBackground())["rgb"]
    vertices, faces = (torch.as_tensor(np.asarray(a)) for a in (mesh.vertices, mesh.faces))
    colours = torch.as_tensor(mesh.visual.vertex_colors[:, :3] / 255.0)
    interpolated = render_vertex_colors(vertices.float(), faces.long(), colours.float(), cameras.c2w, size, size,
                                        cameras.focal(size))
    assert psnr(interpolated, per_pixel.detach()) >= bar
    flat = render_vertex_colors(vertices.float(), faces.long(), torch.full_like(colours.float(), 0.5), cameras.c2w, size,
                                size, cameras.focal(size))
    assert psnr(flat, per_pixel.detach()) < bar - 10  # the bar can fail: one colour everywhere is far from it


def test_system_and_coarse_to_fine_share_the_run_interface(tiny_pipe):
    for config in (run_config("dreamfusion", "a red duck", {k: v for k, v in SMALL.items() if not k.startswith("fine")}),
                   small()):
        run = config.build(tiny_pipe)
        assert run.total_steps - run.step_count == (3 if isinstance(run, System) else 6)
        with run:
            run.fit(show_progress=False)
        assert run.turntable(2, size=16).shape == (2, 3, 16, 16)
        assert run.render(10.0, 0.0, size=16)["opacity"].shape == (1, 1, 16, 16)


def test_the_fine_stage_config_is_what_differs_from_the_coarse_system():
    coarse = run_config("magic3d").system
    fine = dataclasses.replace(FineStageConfig(), lr=1e-3, lambda_normal=0.5).system(coarse)
    assert (fine.lr, fine.lambda_normal, fine.lambda_laplacian, fine.lambda_opaque) == (1e-3, 0.5, 1.0, 0.0)
    assert (fine.elevation_range, fine.radius, fine.fov_deg, fine.seed) == (coarse.elevation_range, coarse.radius,
                                                                           coarse.fov_deg, coarse.seed)
