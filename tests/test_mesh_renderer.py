"""The fine stage's parts: DMTet geometry from a density field, and the rasterizing renderer in a system."""

import torch

from minidiff3d.cameras import Cameras, get_rays
from minidiff3d.dmtet import tet_grid
from minidiff3d.marcher import SolidBackground
from minidiff3d.priors import tiny_stable_diffusion
from minidiff3d.scene import DensityField, Material
from minidiff3d.scene.dmtet_geometry import DMTetGeometry, sdf_from_density
from minidiff3d.scene.mesh_renderer import MeshRenderer
from minidiff3d.systems import System, run_config

RADIUS = 0.5


def _sphere_geometry(resolution=24):
    grid = tet_grid(resolution)
    return DMTetGeometry(grid.vertices.norm(dim=-1) - RADIUS, DensityField(), resolution)


def test_sdf_from_density_finds_the_iso_surface_at_its_distance():
    class Radial(torch.nn.Module):  # density 10 (1 - |x| / 0.8): the level 5 is the sphere of radius 0.4
        def density(self, points):
            return 10 * (1 - points.norm(dim=-1) / 0.8)

    grid = tet_grid(16)
    sdf = sdf_from_density(Radial().density, grid.vertices, 5.0, grid.cell)
    near = (grid.vertices.norm(dim=-1) - 0.4).abs() < 2 * grid.cell
    torch.testing.assert_close(sdf[near], grid.vertices.norm(dim=-1)[near] - 0.4, atol=0.1 * grid.cell, rtol=0)
    assert torch.equal(sdf < 0, grid.vertices.norm(dim=-1) < 0.4)
    assert sdf.abs().max() <= 2 * grid.cell + 1e-6


class Shell(torch.nn.Module):
    """A density field as DreamFusion leaves one: a dense shell (0.38 < |x| < 0.62) with a hollow inside, a pinhole
    through the shell's top, and a small speck of haze floating beside it."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # from_density finds the device from a parameter

    def density(self, points):
        r = points.norm(dim=-1)
        shell = (r > 0.38) & (r < 0.62) & ~((points[:, :2].norm(dim=-1) < 0.05) & (points[:, 2] > 0))
        speck = (points - torch.tensor([0.85, 0.0, 0.0])).norm(dim=-1) < 0.07
        return 20.0 * (shell | speck).float()


def test_from_density_fills_the_hollow_shell_seals_its_pinhole_and_drops_the_speck():
    filled = DMTetGeometry.from_density(Shell(), resolution=32, iso_level=5.0).to_trimesh()
    radii = torch.as_tensor(filled.vertices).norm(dim=-1)
    assert len(filled.split(only_watertight=False)) == 1 and filled.is_watertight and filled.euler_number == 2  # a sphere
    assert radii.min() > 0.5 and radii.max() < 0.7  # the outer surface only: no inner wall, no speck at 0.85
    raw = DMTetGeometry.from_density(Shell(), resolution=32, iso_level=5.0, seal_gaps=0, min_piece=0.0).to_trimesh()
    assert radii.min() > 0.5 and torch.as_tensor(raw.vertices).norm(dim=-1).min() < 0.5  # unfilled: the inner wall
    assert len(raw.split(only_watertight=False)) >= 2  # and the speck


def test_renders_the_sphere_with_the_marchers_maps_and_gradients_reach_every_parameter():
    geometry = _sphere_geometry()
    cameras = Cameras.orbit(torch.tensor([10.0, 40.0]), torch.tensor([0.0, 90.0]))
    size = 32
    lights = torch.tensor([[0.0, 0.0, 1.0]] * 2)
    out = MeshRenderer().render(geometry, cameras.c2w, size, size, cameras.focal(size), SolidBackground(),
                                "lambertian", lights)
    assert out["rgb"].shape == (2, 3, size, size) and out["opacity"].shape == (2, 1, size, size)
    origins, directions = get_rays(cameras.c2w, size, size, cameras.focal(size))
    along = (origins * directions).sum(-1)
    discriminant = along ** 2 - (origins.square().sum(-1) - RADIUS ** 2)
    meets = discriminant > 0
    assert ((out["opacity"][:, 0] > 0.5) == meets).float().mean() > 0.98
    interior = discriminant > 0.05  # away from the silhouette, where the facets' sag is smallest
    exact = -along - discriminant.clamp(min=0).sqrt()
    assert (out["depth"][:, 0] - exact).abs()[interior].max() < geometry.grid.cell / 4  # the SDF sags along an edge
    loss = out["rgb"].mean() + out["laplacian"] + out["normal_consistency"]
    loss.backward()
    for name, parameter in (("sdf", geometry.sdf), ("deformation", geometry.deformation),
                            ("colour", next(geometry.color_field.parameters()))):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_a_system_steps_with_the_mesh_renderer_and_its_regularisers():
    pipe = tiny_stable_diffusion()
    pipe.set_progress_bar_config(disable=True)
    config = run_config("dreamfusion", "a red duck", {"system.render_size": 16, "system.lambda_sparsity": 0.0,
                                                      "system.lambda_laplacian": 1.0, "system.lambda_normal": 0.1})
    geometry = _sphere_geometry(12)
    run = System(geometry, Material(), SolidBackground(), MeshRenderer(), config.guidance.build(pipe),
                 config.prompt.build(pipe), config.system)
    before = geometry.sdf.detach().clone()
    run.fit(2, show_progress=False)
    assert not torch.equal(before, geometry.sdf.detach())
    mesh = geometry.to_trimesh()
    assert mesh.is_watertight and len(mesh.faces) > 0
