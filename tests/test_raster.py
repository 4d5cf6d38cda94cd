"""The rasterizer against independent references: trimesh's ray casts, the toy world's sphere tracer,
finite differences, the area a moving edge sweeps, and the cases that break naive rasterizers."""

import math

import numpy as np
import pytest
import torch
import trimesh

from minidiff3d import raster
from minidiff3d.cameras import focal_from_fov, get_rays, orbit_camera, project_points
from minidiff3d.shading import AMBIENT, LIGHT_DIR
from minidiff3d.toyworld import make_object
from minidiff3d.toyworld.render import render as trace_render

SIZE = 48


def _view(mesh, elevation=20.0, azimuth=35.0, radius=2.8, size=SIZE):
    c2w = orbit_camera(elevation, azimuth, radius)
    vertices = torch.tensor(mesh.vertices, dtype=torch.float32)
    faces = torch.tensor(mesh.faces)
    focal = focal_from_fov(40.0, size)
    clip = raster.project(vertices, c2w, size, size, focal)
    return c2w, vertices, faces, focal, clip, raster.rasterize(clip, faces, size, size)


MESHES = {
    "box": trimesh.creation.box(extents=(0.9, 0.6, 0.7)),
    "icosphere": trimesh.creation.icosphere(subdivisions=3, radius=0.7),
    "torus": trimesh.creation.torus(major_radius=0.55, minor_radius=0.2),
    "cylinder": trimesh.creation.cylinder(radius=0.4, height=1.0, sections=24),
}


@pytest.mark.parametrize("name", sorted(MESHES))
def test_coverage_depth_and_surface_points_match_trimesh_ray_casts(name):
    mesh = MESHES[name]
    c2w, vertices, faces, focal, _, out = _view(mesh)
    origins, directions = (x.reshape(-1, 3).double().numpy() for x in get_rays(c2w, SIZE, SIZE, focal))
    locations, ray_index, _ = trimesh.ray.ray_triangle.RayMeshIntersector(mesh).intersects_location(
        origins, directions, multiple_hits=False)
    hit = np.zeros(SIZE * SIZE, bool)
    hit[ray_index] = True
    covered = (out["triangle_id"] >= 0).reshape(-1).numpy()
    iou = (hit & covered).sum() / (hit | covered).sum()
    assert iou >= 0.99, f"{name}: coverage IoU {iou:.4f} against trimesh"
    both = hit[ray_index] & covered[ray_index]
    forward = -c2w[:3, 2].double().numpy()
    true_depth = (locations - c2w[:3, 3].double().numpy()) @ forward  # camera-space depth, as rasterize returns
    ours = out["depth"].reshape(-1).double().numpy()[ray_index]
    assert np.abs(ours - true_depth)[both].max() <= 1e-4
    # Perspective-correct barycentrics put the interpolated position on the very point the ray hits.
    points = raster.interpolate(vertices, out, faces).reshape(-1, 3).double().numpy()[ray_index]
    assert np.abs(points - locations)[both].max() <= 1e-4


def test_a_flat_shaded_sphere_matches_the_toy_worlds_sphere_tracer():
    sphere = make_object("sphere", "red", seed=0)
    radius = -sphere.sdf(torch.zeros(1, 3)).item()
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    c2w, vertices, faces, focal, _, out = _view(mesh, size=64)
    normals = torch.nn.functional.normalize(torch.tensor(mesh.face_normals, dtype=torch.float32), dim=-1)
    covered = out["triangle_id"] >= 0
    normal = torch.zeros(64, 64, 3)
    normal[covered] = normals[out["triangle_id"][covered]]
    light = torch.nn.functional.normalize(torch.tensor(LIGHT_DIR), dim=0)
    shade = AMBIENT + (1 - AMBIENT) * (normal @ light).clamp(min=0)
    albedo = torch.tensor([0.85, 0.15, 0.15])
    image = torch.where(covered[..., None], shade[..., None] * albedo, torch.ones(3))
    traced = trace_render(sphere, c2w, 64, 64)
    # Coverage: exactly the pixels whose rays meet the true sphere (the facets' sag is below a pixel) ...
    origins, directions = (x.reshape(-1, 3) for x in get_rays(c2w, 64, 64, focal))
    along = (origins * directions).sum(-1)
    meets = (along ** 2 - (origins.square().sum(-1) - radius ** 2) > 0).reshape(64, 64)
    assert torch.equal(covered, meets)
    # ... while the tracer also claims a few grazing rays, which pass within its 1e-3 tolerance of the surface.
    traced_hit = traced["alpha"] > 0.5
    assert (covered & ~traced_hit).sum() == 0 and (traced_hit & ~covered).float().mean() < 0.01
    both = covered & (traced["alpha"] > 0.5)
    assert (image - traced["image"]).abs()[both].mean() < 0.01  # flat facets against the exact sphere
    # Depth against the exact ray-sphere distance (the tracer's own stops within its tolerance, up to
    # 1e-3 / cos of the incidence short): ours is camera-space depth, |d| times less for rays with z = -1.
    discriminant = (along ** 2 - (origins.square().sum(-1) - radius ** 2)).clamp(min=0)
    exact = (-along - discriminant.sqrt()).reshape(64, 64)
    _, unnormalised = get_rays(c2w, 64, 64, focal, normalize=False)
    facing = (discriminant.sqrt() / radius).reshape(64, 64) > 0.3  # the cosine of incidence
    error = (out["depth"] * unnormalised.norm(dim=-1) - exact).abs()[covered & facing]
    assert error.max() < 1e-3  # a facet's sag below the sphere


def test_pixels_follow_get_rays_and_project_points():
    """A vertex's projection lands where cameras.project_points puts it, and the pixel centre it covers is the
    one whose get_rays ray passes through it (rows count downwards, centres at +0.5)."""
    c2w = orbit_camera(30.0, 60.0, 2.8)
    focal = focal_from_fov(40.0, 40)
    point = torch.tensor([[0.2, -0.1, 0.3]])
    clip = raster.project(point, c2w, 30, 40, focal)
    ndc = clip[:, :2] / clip[:, 3:]
    pixels, depth = project_points(point, c2w, 30, 40, focal)
    torch.testing.assert_close(torch.stack([(ndc[:, 0] + 1) * 20, (1 - ndc[:, 1]) * 15], -1), pixels)
    torch.testing.assert_close(clip[:, 3], depth)
    # A tiny triangle around the point covers exactly the pixel whose centre is nearest.
    _, directions = get_rays(c2w, 30, 40, focal)
    j, i = int(pixels[0, 0]), int(pixels[0, 1])
    centre_ray = directions[i, j]
    target = c2w[:3, 3] + centre_ray * depth[0] / (centre_ray @ -c2w[:3, 2])
    right, up = c2w[:3, 0], c2w[:3, 1]
    s = 0.2 * depth[0] / focal  # a fifth of a pixel
    triangle = torch.stack([target - s * right - s * up, target + s * right - s * up, target + s * up])
    out = raster.rasterize(raster.project(triangle, c2w, 30, 40, focal), torch.tensor([[0, 1, 2]]), 30, 40)
    assert (out["triangle_id"] >= 0).nonzero().tolist() == [[i, j]]


def test_batched_equals_one_view_at_a_time():
    mesh = MESHES["torus"]
    vertices, faces = torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.faces)
    c2w = orbit_camera(torch.tensor([10.0, 50.0]), torch.tensor([0.0, 120.0]), 2.8)
    clip = raster.project(vertices, c2w, 32, 32, focal_from_fov(40.0, 32))
    batch = raster.rasterize(clip, faces, 32, 32)
    for b in range(2):
        one = raster.rasterize(clip[b], faces, 32, 32)
        for key in one:
            torch.testing.assert_close(batch[key][b], one[key])


def _quad(x0, x1, y0, y1, w=1.0, z=0.0):
    """A screen-facing rectangle in clip coordinates (two triangles)."""
    v = torch.tensor([[x0, y0, z, 1.0], [x1, y0, z, 1.0], [x1, y1, z, 1.0], [x0, y1, z, 1.0]], dtype=torch.float64) * w
    return v, torch.tensor([[0, 1, 2], [0, 2, 3]])


def test_antialiased_coverage_grows_by_the_edge_length_as_the_edge_moves():
    """d(sum of antialiased alpha)/d(edge position) is the edge's length in pixels: the area the edge sweeps."""
    vertices, faces = _quad(-0.53, 0.41, -0.37, 0.46)
    vertices.requires_grad_()
    size = 32
    out = raster.rasterize(vertices, faces, size, size)
    alpha = raster.antialias((out["triangle_id"] >= 0).double()[..., None], out, vertices, faces)
    alpha.sum().backward()
    height_px = (0.46 + 0.37) * size / 2
    width_px = (0.41 + 0.53) * size / 2
    right = vertices.grad[[1, 2], 0].sum().item() * 2 / size  # per pixel of movement
    top = vertices.grad[[2, 3], 1].sum().item() * 2 / size
    # One pixel pair per row (column) that the edge crosses; at the corner where the quad's inner diagonal
    # meets the edge, the pair lies on the other triangle and is missed, as in nvdiffrast: within 1.5 pixels.
    assert right == pytest.approx(height_px, abs=1.5) and top == pytest.approx(width_px, abs=1.5)
    assert vertices.grad[[0, 3], 0].sum().item() * 2 / size == pytest.approx(-height_px, abs=1.5)
    # and the blended coverage is the rectangle's true area to within a pixel of its perimeter's rounding
    assert alpha.sum().item() == pytest.approx(height_px * width_px, abs=2.0)


def test_gradients_match_finite_differences():
    """Barycentrics, depth, interpolation and antialiasing, in double precision, away from ties."""
    generator = torch.Generator().manual_seed(0)
    vertices = torch.tensor([[-0.61, -0.52, 0.1, 1.3], [0.57, -0.33, -0.2, 1.1], [0.08, 0.63, 0.3, 1.6],
                             [0.71, 0.52, 0.2, 1.2]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    colours = torch.rand(4, 3, generator=generator, dtype=torch.float64)
    ids = raster.rasterize(vertices, faces, 16, 16)["triangle_id"]

    def image(v, c):
        out = raster.rasterize(v, faces, 16, 16)
        assert torch.equal(out["triangle_id"], ids)  # the perturbation must not change which triangle wins
        shaded = raster.interpolate(c, out, faces) * (1 + out["depth"][..., None])
        background = torch.ones(3, dtype=torch.float64)
        composite = torch.where((out["triangle_id"] >= 0)[..., None], shaded, background)
        return raster.antialias(composite, out, v, faces)

    assert torch.autograd.gradcheck(image, (vertices.requires_grad_(), colours.requires_grad_()), eps=1e-6, atol=1e-5)


def test_empty_degenerate_and_behind_the_camera_triangles():
    empty = raster.rasterize(torch.zeros(3, 4), torch.zeros(0, 3, dtype=torch.long), 8, 8)
    assert (empty["triangle_id"] == -1).all() and empty["barycentrics"].abs().sum() == 0
    collinear = torch.tensor([[-0.5, -0.5, 0, 1], [0.0, 0.0, 0, 1], [0.5, 0.5, 0, 1.0]])
    out = raster.rasterize(collinear, torch.tensor([[0, 1, 2]]), 8, 8)
    assert (out["triangle_id"] == -1).all() and torch.isfinite(out["barycentrics"]).all()
    # Wholly behind the camera (w < 0): a naive x/w would flip it into view.
    vertices, faces = _quad(-0.5, 0.5, -0.5, 0.5, w=-1.0)
    assert (raster.rasterize(vertices.float(), faces, 8, 8)["triangle_id"] == -1).all()
    # Through the eye plane (one vertex behind, w < 0): dropped whole, not folded across the image.
    through = torch.tensor([[-0.5, -0.5, 0, 1], [0.5, -0.5, 0, 1], [0.2, 0.4, 0.5, -0.5]])
    assert (raster.rasterize(through, torch.tensor([[0, 1, 2]]), 8, 8)["triangle_id"] == -1).all()
    # Beyond the far plane (z_ndc > 1) it is clipped per pixel; a nearer copy still shows.
    far, faces = _quad(-0.5, 0.5, -0.5, 0.5, z=1.5)
    assert (raster.rasterize(far.float(), faces, 8, 8)["triangle_id"] == -1).all()


def test_the_nearer_triangle_wins_whatever_the_order():
    near, faces = _quad(-0.5, 0.5, -0.5, 0.5, w=1.0, z=-0.2)  # depth w = 1
    far, _ = _quad(-0.8, 0.3, -0.8, 0.3, w=2.0, z=0.4)  # depth w = 2
    for vertices, near_ids in ((torch.cat([near, far]), {0, 1}), (torch.cat([far, near]), {2, 3})):
        both = torch.cat([faces, faces + 4])
        ids = raster.rasterize(vertices.float(), both, 16, 16)["triangle_id"]
        centre = ids[4:12, 4:12]  # inside both rectangles
        assert set(centre.unique().tolist()) <= near_ids


def test_bad_input_gets_named_errors():
    faces = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="vertices_clip"):
        raster.rasterize(torch.zeros(3, 3), faces, 8, 8)
    with pytest.raises(TypeError, match="faces"):
        raster.rasterize(torch.zeros(3, 4), faces.float(), 8, 8)
    with pytest.raises(ValueError, match="faces"):
        raster.rasterize(torch.zeros(3, 4), torch.tensor([[0, 1, 3]]), 8, 8)
    with pytest.raises(ValueError, match="height"):
        raster.rasterize(torch.zeros(3, 4), faces, 0, 8)
    with pytest.raises(ValueError, match="vertices_clip"):
        raster.rasterize(torch.full((3, 4), math.nan), faces, 8, 8)
    out = raster.rasterize(torch.zeros(3, 4), faces, 8, 8)
    with pytest.raises(ValueError, match="attributes"):
        raster.interpolate(torch.zeros(2, 3, 3), out, faces)
    with pytest.raises(ValueError, match="raster"):
        raster.interpolate(torch.zeros(3, 3), {"depth": out["depth"]}, faces)
    with pytest.raises(ValueError, match="image"):
        raster.antialias(torch.zeros(4, 8, 3), out, torch.zeros(3, 4), faces)
    with pytest.raises(ValueError, match="vertices"):
        raster.project(torch.zeros(3, 2), torch.eye(4), 8, 8, 10.0)
    with pytest.raises(ValueError, match="near, far"):
        raster.projection_matrix(8, 8, 10.0, near=2.0, far=1.0)
