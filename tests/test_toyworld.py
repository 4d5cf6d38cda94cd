import math

import pytest
import torch

from minidiff3d.cameras import focal_from_fov, get_rays, orbit_camera
from minidiff3d.toyworld import (
    ASYMMETRIC, CATEGORIES, COLORS, DEFAULT_FOV_DEG, TWO_PART, grid_points, make_object, object_mesh,
    point_cloud_dataset, render, render_views, sdf_dataset, sdf_grid, surface_points,
)

ALL = [make_object(c, "red", seed) for c in CATEGORIES for seed in (0, 1, 2)]


def test_catalogue_is_as_designed():
    assert len(CATEGORIES) >= 8 and len(COLORS) >= 6
    assert len(ASYMMETRIC) >= 3 and set(ASYMMETRIC) <= set(CATEGORIES)
    assert set(TWO_PART) <= set(CATEGORIES)
    for category in TWO_PART:
        assert len(make_object(category, "blue").parts) >= 2
    assert make_object("torus", "red", 3).caption == "a red torus"
    assert make_object("duck", "orange").caption == "an orange duck"


@pytest.mark.parametrize("obj", ALL, ids=lambda o: f"{o.category}-{o.seed}")
def test_sdf_is_negative_inside_and_inside_the_unit_ball(obj):
    assert obj.sdf(torch.tensor([obj.inner_point])).item() < 0
    # nothing of the object reaches beyond radius 0.95: every point there is outside
    directions = torch.nn.functional.normalize(torch.randn(2000, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert (obj.sdf(0.95 * directions) > 0).all()


def test_torus_hole_is_outside():
    assert make_object("torus", "red").sdf(torch.zeros(1, 3)).item() > 0


@pytest.mark.parametrize("category", CATEGORIES)
def test_sdf_matches_distance_to_the_surface(category):
    """Outside the object, f equals the distance to dense surface samples (an independent estimate).

    Samples can only over-estimate the distance, most near sharp tips that the mesh rounds off;
    so f must never exceed it (the property sphere tracing relies on) and match it closely.
    """
    obj = make_object(category, "green", seed=1)
    surface = surface_points(obj, 40000, seed=0, resolution=128)  # fine enough for thin noses and apexes
    g = torch.Generator().manual_seed(1)
    probes = torch.rand(400, 3, generator=g) * 2 - 1
    outside = probes[obj.sdf(probes) > 0.05]
    nearest = torch.cdist(outside, surface).min(dim=1).values
    gap = nearest - obj.sdf(outside)
    assert gap.min() > -1e-4 and gap.median() < 2e-3 and gap.max() < 0.04


def test_sphere_sdf_is_analytic():
    sphere = make_object("sphere", "red", 0)
    radius = -sphere.sdf(torch.zeros(1, 3)).item()
    points = torch.randn(100, 3)
    assert torch.allclose(sphere.sdf(points), points.norm(dim=-1) - radius, atol=1e-6)


@pytest.mark.parametrize("category", CATEGORIES)
def test_rendered_surface_is_on_the_zero_level_set(category):
    obj = make_object(category, "blue", 0)
    c2w = orbit_camera(25.0, 30.0)
    view = render(obj, c2w, 40, 40)
    origins, directions = get_rays(c2w, 40, 40, focal_from_fov(DEFAULT_FOV_DEG, 40))
    hit = view["alpha"] > 0
    assert hit.sum() > 50
    points = origins[hit] + view["depth"][hit, None] * directions[hit]
    assert obj.sdf(points).abs().max() < 2e-3


def test_render_of_a_sphere_matches_geometry():
    sphere = make_object("sphere", "red", 0)
    radius = -sphere.sdf(torch.zeros(1, 3)).item()
    c2w = orbit_camera(10.0, 70.0, 3.0)
    view = render(sphere, c2w, 33, 33)
    assert math.isclose(view["depth"][16, 16].item(), 3.0 - radius, abs_tol=2e-3)
    origins, directions = get_rays(c2w, 33, 33, focal_from_fov(DEFAULT_FOV_DEG, 33))
    hit = view["alpha"] > 0
    points = origins[hit] + view["depth"][hit, None] * directions[hit]
    assert torch.allclose(view["normals"][hit], points / points.norm(dim=-1, keepdim=True), atol=1e-2)


def test_render_outputs_shapes_ranges_and_background():
    view = render(make_object("duck", "yellow", 0), orbit_camera(20.0, 0.0), 24, 32, antialias=2)
    assert view["image"].shape == (24, 32, 3) and view["alpha"].shape == (24, 32)
    assert view["depth"].shape == (24, 32) and view["normals"].shape == (24, 32, 3)
    assert view["image"].min() >= 0 and view["image"].max() <= 1
    empty = view["alpha"] == 0
    assert torch.equal(view["image"][empty], torch.ones(int(empty.sum()), 3))
    assert (view["depth"][empty] == 0).all() and (view["normals"][empty] == 0).all()
    assert ((view["alpha"] > 0) & (view["alpha"] < 1)).any(), "anti-aliasing gives fractional coverage at edges"


def test_front_faces_azimuth_zero():
    """The duck's beak (accent colour) is seen from the front and hidden from the back."""
    duck = make_object("duck", "yellow", 0)
    dark = lambda v: ((v["image"] < 0.3).all(-1) & (v["alpha"] > 0)).sum().item()
    assert dark(render(duck, orbit_camera(10.0, 0.0), 48, 48)) > 5 * max(1, dark(render(duck, orbit_camera(10.0, 180.0), 48, 48)))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: make_object("teapot", "red"), "category: expected one of .*got 'teapot'"),
        (lambda: make_object("torus", "teal"), "color: expected one of .*got 'teal'"),
        (lambda: make_object("torus", "red", seed=-2), "seed: expected a non-negative integer, got -2"),
        (lambda: render(make_object("torus", "red"), torch.eye(3)), r"c2w: expected shape \[..., 4, 4\], got \[3, 3\]"),
        (lambda: render(make_object("torus", "red"), torch.eye(4), 0, 8), "height: expected a positive integer, got 0"),
        (lambda: make_object("cube", "red").sdf(torch.zeros(4, 2)), r"points: expected shape \[..., 3\], got \[4, 2\]"),
        (lambda: make_object("cube", "red").sdf(torch.tensor([[float("nan"), 0, 0]])), "points: expected finite values"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_render_views_is_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDIFF3D_CACHE", str(tmp_path))
    obj = make_object("mug", "purple", 2)
    first = render_views(obj, 6, 16, 16, seed=3)
    assert len(list(tmp_path.rglob("*.pt"))) == 1
    again = render_views(obj, 6, 16, 16, seed=3)
    fresh = render_views(obj, 6, 16, 16, seed=3, cache=False)
    assert torch.equal(first.images, again.images) and torch.equal(first.images, fresh.images)
    assert torch.equal(first.c2ws, orbit_camera(first.elevations, first.azimuths))
    assert first.captions == ["a purple mug"] * 6 and first.K.shape == (3, 3)
    gaps = first.azimuths.sort().values.diff()
    assert torch.allclose(gaps, torch.full_like(gaps, 60.0), atol=1e-3)
    other = render_views(obj, 6, 16, 16, seed=4)
    assert not torch.equal(first.images, other.images)
    part = first.subset([0, 2])
    assert len(part) == 2 and torch.equal(part.images[1], first.images[2])


def test_sdf_grid_axis_k_is_coordinate_k():
    duck = make_object("duck", "red", 0)  # the beak points to +x: the grid must be asymmetric along axis 0
    grid = sdf_grid(duck, 17)
    assert grid.shape == (1, 17, 17, 17)
    points = grid_points(17)
    assert torch.allclose(points[3, 5, 7], torch.tensor([-1 + 2 * 3 / 16, -1 + 2 * 5 / 16, -1 + 2 * 7 / 16]))
    assert torch.allclose(grid[0, 3, 5, 7], duck.sdf(points[3, 5, 7][None])[0])
    truncated = sdf_grid(duck, 17, truncation=0.1)
    assert truncated.min() >= -0.1 and truncated.max() <= 0.1


def test_mesh_and_points_come_from_the_same_object():
    mug = make_object("mug", "red", 0)
    mesh = object_mesh(mug, 48)
    assert mesh.is_watertight and mesh.volume > 0
    assert mug.sdf(torch.as_tensor(mesh.vertices, dtype=torch.float32)).abs().max() < 2 * 2 / 47
    points = surface_points(mug, 500, seed=1)
    assert points.shape == (500, 3) and mug.sdf(points).abs().max() < 1e-3
    assert torch.equal(points, surface_points(mug, 500, seed=1))


def test_point_cloud_dataset_labels_seeds_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDIFF3D_CACHE", str(tmp_path))
    points, labels = point_cloud_dataset(2, 128, categories=("torus", "duck"))
    assert points.shape == (4, 128, 3) and labels.tolist() == [0, 0, 1, 1]
    assert points.abs().max() <= 1.0
    duck = make_object("duck", "red", 1)  # the colour never changes the shape
    assert duck.sdf(points[3]).abs().max() < 1e-3
    held_out, _ = point_cloud_dataset(2, 128, categories=("torus", "duck"), first_seed=100)
    assert make_object("torus", "red", 100).sdf(held_out[0]).abs().max() < 1e-3
    assert len(list(tmp_path.rglob("*.pt"))) == 2
    assert torch.equal(point_cloud_dataset(2, 128, categories=("torus", "duck"))[0], points)
    with pytest.raises(ValueError, match="categories: expected one of"):
        point_cloud_dataset(1, 16, categories=("teapot",))


def test_sdf_dataset_is_the_truncated_grids_of_its_shapes(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDIFF3D_CACHE", str(tmp_path))
    grids, labels = sdf_dataset(2, 16, truncation=0.1, categories=("cube", "mug"), first_seed=5)
    assert grids.shape == (4, 1, 16, 16, 16) and labels.tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(grids[3], sdf_grid(make_object("mug", "red", 6), 16, truncation=0.1))
    assert grids.min() >= -0.1 and grids.max() <= 0.1
