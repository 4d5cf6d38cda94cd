import hashlib
import shutil

import numpy as np
import pytest
import torch
import trimesh
from skimage.measure import marching_cubes as skimage_marching_cubes
from skimage.metrics import peak_signal_noise_ratio

from minidiff3d import assets
from minidiff3d.mesh import export_mesh, extract_mesh, meshes_from_sdf_grids
from minidiff3d.metrics import evaluate_meshes, psnr
from minidiff3d.toyworld import grid_points


def sphere_grid(resolution, radius=0.6):
    return grid_points(resolution).norm(dim=-1) - radius


def test_marching_cubes_sphere_radius_within_a_voxel_and_watertight():
    mesh = extract_mesh(sphere_grid(33), level=0.0)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    voxel = 2 / 32
    assert np.abs(radii - 0.6).max() < voxel
    assert mesh.is_watertight and mesh.volume > 0  # outward normals give a positive volume


def test_marching_cubes_agrees_with_scikit_image():
    grid = sphere_grid(25)
    ours = extract_mesh(grid, level=0.1)
    vertices, faces, _, _ = skimage_marching_cubes(grid.numpy(), level=0.1, spacing=(2 / 24,) * 3)
    theirs = trimesh.Trimesh(vertices - 1.0, faces)
    assert abs(ours.area - theirs.area) / theirs.area < 0.01
    assert np.allclose(ours.bounds, theirs.bounds, atol=1e-3)


def test_density_grid_with_inside_above():
    mesh = extract_mesh(-sphere_grid(21), level=0.0, inside="above")
    assert mesh.is_watertight and mesh.volume > 0


def test_fill_interior_removes_enclosed_surfaces_but_keeps_open_cavities():
    points = grid_points(41)
    radius = points.norm(dim=-1)
    shell = 10.0 * ((radius - 0.6).abs() < 0.1).float()  # a hollow ball: density in a shell only
    assert len(extract_mesh(shell, 5.0, inside="above").split(only_watertight=False)) == 2  # outer and inner sphere
    filled = extract_mesh(shell, 5.0, inside="above", fill_interior=True)
    assert len(filled.split(only_watertight=False)) == 1 and filled.is_watertight
    assert np.abs(np.linalg.norm(filled.vertices, axis=1) - 0.7).max() < 2 / 40
    pierced = shell.clone()
    pierced[20, 20, 29:36] = 0.0  # a one-voxel hole through the top of the shell (z from 0.45 to 0.75)
    assert len(extract_mesh(pierced, 5.0, inside="above", fill_interior=True, seal_gaps=0).split(only_watertight=False)) == 1
    assert np.linalg.norm(extract_mesh(pierced, 5.0, inside="above", fill_interior=True, seal_gaps=0).vertices, axis=1).min() < 0.55
    sealed = extract_mesh(pierced, 5.0, inside="above", fill_interior=True)  # seal_gaps=1 closes the pinhole
    assert np.linalg.norm(sealed.vertices, axis=1).min() > 0.6
    cup = shell * (points[..., 2] < 0.3).float()  # cut the top off: the cavity opens to the outside
    opened = extract_mesh(cup, 5.0, inside="above", fill_interior=True)
    assert np.linalg.norm(opened.vertices, axis=1).min() < 0.55  # the inner wall is still there


def test_shape_touching_the_grid_edge_still_closes():
    mesh = extract_mesh(sphere_grid(21, radius=1.2), level=0.0)
    assert mesh.is_watertight


def test_no_surface_is_a_clear_error():
    with pytest.raises(ValueError, match="no surface at level 0"):
        extract_mesh(torch.ones(8, 8, 8), level=0.0)
    with pytest.raises(ValueError, match=r"grid: expected shape \[R, R, R\] with R=8"):
        extract_mesh(torch.ones(8, 8, 9))


def ball_grid(radius, centre=(0.0, 0.0, 0.0), resolution=24):
    return ((grid_points(resolution) - torch.tensor(centre)).norm(dim=-1) - radius)[None]


def test_meshes_from_sdf_grids_marks_a_grid_without_surface_as_none():
    grids = torch.stack([ball_grid(0.5), torch.ones(1, 24, 24, 24)])
    meshes = meshes_from_sdf_grids(grids)
    assert meshes[1] is None and meshes[0].is_watertight
    with pytest.raises(ValueError, match=r"grids: expected shape \[B, 1, R, R, R\]"):
        meshes_from_sdf_grids(grids[:, 0])


def test_evaluate_meshes_counts_failures_and_floaters():
    refs = torch.stack([torch.nn.functional.normalize(torch.randn(512, 3, generator=torch.Generator().manual_seed(i)), dim=-1) * 0.5
                        for i in range(3)])
    floater = ball_grid(0.5, (-0.2, 0, 0)).minimum(ball_grid(0.15, (0.8, 0, 0)))  # a ball and a speck apart
    meshes = meshes_from_sdf_grids(torch.stack([ball_grid(0.5), floater, torch.ones(1, 24, 24, 24)]))
    scores = evaluate_meshes(meshes, refs)
    assert scores["surface"] == pytest.approx(2 / 3) and scores["watertight"] == pytest.approx(2 / 3)
    assert scores["pieces"] == pytest.approx(1.5)
    assert scores["one_piece"] == pytest.approx(1 / 3)  # watertight, but the speck is a second piece; failures count
    alone = evaluate_meshes(meshes[:1], refs)
    assert alone["COV-CD"] == pytest.approx(1 / 3)
    cube = meshes_from_sdf_grids((grid_points(24).abs().amax(-1) - 0.4)[None, None])
    assert alone["MMD-CD"] < 0.03 < evaluate_meshes(cube, refs)["MMD-CD"]  # 0.016 is 512-point sampling noise
    with pytest.raises(ValueError, match="meshes: expected at least one mesh"):
        evaluate_meshes([], refs)


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb"])
def test_export_round_trip(tmp_path, suffix):
    mesh = extract_mesh(sphere_grid(17), level=0.0)
    path = export_mesh(mesh, tmp_path / f"sphere{suffix}")
    loaded = trimesh.load(path, force="mesh")
    assert len(loaded.faces) == len(mesh.faces)
    assert np.allclose(loaded.bounds, mesh.bounds, atol=1e-5)


def test_export_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match=r"path suffix: expected one of .*got '.xyz'"):
        export_mesh(extract_mesh(sphere_grid(9), 0.0), tmp_path / "m.xyz")


def test_psnr_matches_scikit_image():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(8, 8, 3, generator=g)
    b = (a + 0.05 * torch.randn(8, 8, 3, generator=g)).clamp(0, 1)
    assert abs(psnr(b, a).item() - peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0)) < 1e-4
    with pytest.raises(ValueError, match=r"pred: expected shape \[8, 8, 3\], got \[8, 8\]"):
        psnr(a[..., 0], a)


def test_shipped_assets_match_their_manifest():
    assert assets.verify() and all(assets.verify().values())
    for entry in assets.manifest().values():
        data = (assets.HERE / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("folder,name", [("point_cloud_diffusion", "point-cloud-diffusion"), ("toy_clip", "toy-clip")])
def test_loaders_refuse_a_weight_file_whose_sha256_is_not_the_manifests(tmp_path, monkeypatch, folder, name):
    from minidiff3d.diffusion import load_shipped_denoiser
    from minidiff3d.priors import load

    loader = (lambda: load(name, device="cpu")) if name == "toy-clip" else (lambda: load_shipped_denoiser(name, "cpu"))
    shutil.copytree(assets.HERE / folder, tmp_path / folder)
    monkeypatch.setattr(assets, "HERE", tmp_path)
    loader()  # the copy, intact, loads
    entry = next(e for e in assets.manifest().values() if e["file"].startswith(folder + "/"))
    weights = tmp_path / entry["file"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # a tensor's last byte: the file still parses, so only the hash can tell
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError) as error:
        loader()
    assert str(weights) in str(error.value) and entry["sha256"] in str(error.value)
    assert hashlib.sha256(data).hexdigest() in str(error.value)


def test_reference_renders_are_reproduced():
    from minidiff3d.toyworld import make_object, render

    reference = assets.load_toyworld_reference()
    for spec, c2w, image in zip(reference["objects"], reference["c2ws"], reference["images"]):
        fresh = render(make_object(*spec), c2w, 32, 32, reference["fov_deg"])["image"]
        assert psnr(fresh, image) > 40


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    from minidiff3d.metrics import ssim

    g = torch.Generator().manual_seed(2)
    a = torch.rand(32, 40, 3, generator=g)
    b = (a + 0.1 * torch.randn(32, 40, 3, generator=g)).clamp(0, 1)
    reference = structural_similarity(a.numpy(), b.numpy(), data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False)
    assert abs(ssim(b, a).item() - reference) < 1e-4
    assert abs(ssim(a, a).item() - 1.0) < 1e-6
    with pytest.raises(ValueError, match="target: expected an image"):
        ssim(torch.rand(5, 5, 3), torch.rand(5, 5, 3))


def test_turntable_gif_has_every_frame(tmp_path):
    from PIL import Image

    from minidiff3d.images import to_channels_first, to_channels_last
    from minidiff3d.plotting import save_gif, turntable
    from minidiff3d.toyworld import make_object, render

    duck = make_object("duck", "red", 0)
    frames = turntable(lambda c2w: to_channels_first(render(duck, c2w, 16, 20)["image"]), n_frames=6)
    assert frames.shape == (6, 3, 16, 20)  # the systems' layout, [F,3,H,W]
    assert not torch.equal(frames[0], frames[3])  # the front and the back differ
    gif = Image.open(save_gif(frames, tmp_path / "turn.gif", scale=2))
    assert gif.n_frames == 6 and gif.size == (40, 32)  # PIL's size is (width, height)
    gif.seek(3)
    pixels = torch.tensor(np.asarray(gif.convert("RGB")), dtype=torch.float32)[::2, ::2] / 255
    assert (pixels - to_channels_last(frames[3])).abs().max() < 0.05  # the GIF holds the frame the right way round
    with pytest.raises(ValueError, match=r"render_fn\(c2w\): expected shape \[3, \*, \*\]"):
        turntable(lambda c2w: render(duck, c2w, 16, 16)["image"], n_frames=2)  # a photograph's layout, unconverted


def test_image_layout_converters_are_inverse_and_name_bad_input():
    from minidiff3d.images import to_channels_first, to_channels_last

    images = torch.rand(2, 5, 7, 3)
    assert to_channels_first(images).shape == (2, 3, 5, 7) and torch.equal(to_channels_last(to_channels_first(images)), images)
    assert to_channels_last(torch.rand(3, 5, 7)).shape == (5, 7, 3)
    with pytest.raises(ValueError, match=r"images: expected images \[\.\.\.,H,W,3\]"):
        to_channels_first(torch.rand(2, 3, 5, 7))
    with pytest.raises(ValueError, match=r"images: expected images \[\.\.\.,3,H,W\]"):
        to_channels_last(torch.rand(5, 7))


def test_gallery_puts_each_trace_in_its_own_scene():
    from minidiff3d.plotting import gallery, mesh_trace, points_trace

    ball = extract_mesh(sphere_grid(16))
    fig = gallery([points_trace(torch.rand(10, 3)), None, mesh_trace(ball)], ["a", "b", "c"], cols=2)
    assert [trace.scene for trace in fig.data] == ["scene", "scene3"]  # the empty panel keeps its place
    assert [a.text for a in fig.layout.annotations] == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"titles: expected one per trace \(3\), got 2"):
        gallery([None] * 3, ["a", "b"])
