import json
import math
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from minidiff3d.cameras import focal_from_fov, intrinsics, orbit_camera
from minidiff3d.toyworld import MultiViewData, load_blender, make_object, render_views, write_blender


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    return render_views(make_object("snowman", "red", 1), 5, 24, 24, seed=2, cache=False)


def test_blender_round_trip(views, tmp_path):
    write_blender(views, tmp_path, split="train")
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    assert math.isclose(meta["camera_angle_x"], 2 * math.atan(12 / views.focal))
    loaded = load_blender(tmp_path, split="train")
    assert torch.allclose(loaded.images, views.images, atol=3 / 255)
    assert torch.allclose(loaded.alphas, views.alphas, atol=1 / 255)
    assert torch.equal(loaded.c2ws, views.c2ws)
    assert torch.allclose(loaded.K, views.K)
    assert torch.allclose(loaded.elevations, views.elevations, atol=1e-3)
    assert torch.allclose(loaded.azimuths, views.azimuths, atol=1e-3)
    assert loaded.captions == views.captions


def test_nerf_synthetic_folder_composites_on_the_chosen_background(tmp_path):
    """A hand-made scene in the real dataset's layout: file paths without '.png', RGBA, 800 px wide in spirit."""
    (tmp_path / "test").mkdir()
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (255, 0, 0, 255)  # an opaque red square
    rgba[0, 0] = (0, 0, 255, 128)  # a half-transparent blue pixel
    Image.fromarray(rgba, "RGBA").save(tmp_path / "test" / "r_0.png")
    pose = np.eye(4)
    pose[:3, 3] = [0.0, -4.0, 0.0]
    meta = {"camera_angle_x": 0.6911112070083618, "frames": [{"file_path": "./test/r_0", "rotation": 0.0, "transform_matrix": pose.tolist()}]}
    (tmp_path / "transforms_test.json").write_text(json.dumps(meta))

    black = load_blender(tmp_path, "test", background=(0.0, 0.0, 0.0))
    white = load_blender(tmp_path, "test", background=(1.0, 1.0, 1.0))
    assert torch.allclose(black.images[0, 3, 3], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(black.images[0, 7, 7], torch.zeros(3)) and torch.allclose(white.images[0, 7, 7], torch.ones(3))
    a = 128 / 255
    assert torch.allclose(white.images[0, 0, 0], torch.tensor([1 - a, 1 - a, 1.0]), atol=1e-6)
    assert math.isclose(black.focal, 4 / math.tan(0.6911112070083618 / 2), rel_tol=1e-5)
    assert math.isclose(black.azimuths[0].item(), 270.0, abs_tol=1e-4) and abs(black.elevations[0].item()) < 1e-4
    small = load_blender(tmp_path, "test", background=(0.0, 0.0, 0.0), size=4)
    assert small.images.shape == (1, 4, 4, 3) and math.isclose(small.focal, black.focal / 2, rel_tol=1e-5)
    assert torch.allclose(small.images[0, 1, 1], torch.tensor([1.0, 0.0, 0.0]))  # area average of the opaque square


def test_loader_errors_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder: expected transforms_val.json"):
        load_blender(tmp_path, "val")
    with pytest.raises(ValueError, match=r"background: expected 3 values in \[0,1\]"):
        (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.5, "frames": [{}]}))
        load_blender(tmp_path, background=(2.0, 0.0, 0.0))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 3), height=st.integers(1, 6), width=st.integers(1, 6),
       fov=st.floats(10.0, 120.0), background=st.tuples(*[st.floats(0.0, 1.0)] * 3))
def test_random_scenes_round_trip_through_the_blender_format(seed, n, height, width, fov, background):
    # Straight colour and alpha on 8-bit levels, as a PNG stores them: then nothing is lost but float rounding.
    g = torch.Generator().manual_seed(seed)
    straight = torch.randint(0, 256, (n, height, width, 3), generator=g) / 255
    alphas = torch.randint(0, 256, (n, height, width), generator=g) / 255
    bg = torch.tensor(background)
    elevations, azimuths = torch.rand(n, generator=g) * 170 - 85, torch.rand(n, generator=g) * 360
    data = MultiViewData(images=alphas[..., None] * straight + (1 - alphas[..., None]) * bg, alphas=alphas,
                         c2ws=orbit_camera(elevations, azimuths, 2 + torch.rand(n, generator=g)),
                         K=intrinsics(focal_from_fov(fov, width), height, width), elevations=elevations, azimuths=azimuths,
                         captions=["a red duck"] * n)
    with tempfile.TemporaryDirectory() as folder:
        write_blender(data, folder, "test", background=background)
        loaded = load_blender(folder, "test", background=background)
    torch.testing.assert_close(loaded.alphas, data.alphas, rtol=0, atol=1e-6)
    torch.testing.assert_close(loaded.images, data.images, rtol=0, atol=1e-5)
    assert torch.equal(loaded.c2ws, data.c2ws) and loaded.captions == data.captions
    torch.testing.assert_close(loaded.K, data.K)
    torch.testing.assert_close(loaded.elevations, data.elevations, rtol=0, atol=1e-3)
    assert ((loaded.azimuths - data.azimuths + 180) % 360 - 180).abs().max() < 1e-3
