import pytest
import torch

from minidiff3d.cameras import orbit_camera
from minidiff3d.metrics import psnr
from minidiff3d.marcher import OccupancyGrid
from minidiff3d.nerf import fit_nerf
from minidiff3d.toyworld import make_object, render_views


@pytest.fixture(scope="module")
def scene():
    obj = make_object("sphere", "blue", 0)
    return render_views(obj, 24, 24, 24, seed=0, cache=False), render_views(obj, 3, 24, 24, seed=5, azimuths="random", cache=False)


def test_fit_nerf_on_a_tiny_scene_reaches_a_psnr_bar(scene):
    train, test = scene
    result = fit_nerf(train.images, train.c2ws, train.focal, near=1.8, far=3.8, steps=150, batch_size=512,
                      n_samples=48, eval_every=50, show_progress=False, device="cpu")
    held_out = [psnr(result.render(c2w, 24, 24, test.focal), image).item() for c2w, image in zip(test.c2ws, test.images)]
    assert min(held_out) > 22.0, held_out
    assert result.history["step"] == [50, 100, 150] and result.history["loss"][-1] < result.history["loss"][0]


def test_occupancy_grid_marks_only_dense_cells():
    grid = OccupancyGrid(resolution=8, threshold=0.5)
    grid.update(lambda p: (p.norm(dim=-1) < 0.5).float() * 10)  # a dense ball of radius 0.5
    assert grid.query(torch.tensor([[0.0, 0.0, 0.1]])).item()
    assert not grid.query(torch.tensor([[0.9, 0.9, 0.9]])).item()
    assert not grid.query(torch.tensor([[1.5, 0.0, 0.0]])).item()  # outside the box is empty


def test_occupancy_grid_keeps_the_denser_half_of_a_faint_scene():
    grid = OccupancyGrid(resolution=8, threshold=0.5)
    grid.update(lambda p: 0.1 + 0.1 * (p[:, 0] > 0).float())  # all below the threshold, denser for x > 0
    assert grid.query(torch.tensor([[0.5, 0.0, 0.0]])).item()
    assert not grid.query(torch.tensor([[-0.5, 0.0, 0.0]])).item()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(c2ws=torch.eye(3).expand(2, 3, 3)), r"c2ws: expected shape \[N, 4, 4\] with N=2|c2ws: expected shape \[N, 4, 4\]"),
        (dict(field="voxels"), "field: expected one of \\['hashgrid', 'mlp'\\], got 'voxels'"),
        (dict(steps=None), "steps, max_seconds: expected at least one of them"),
        (dict(focal=0.0), "focal: expected a finite positive number"),
        (dict(eval_every=0), "eval_every: expected a positive integer, got 0"),
        (dict(n_fine=-1), "n_fine: expected a non-negative integer, got -1"),
        (dict(batch_size=0), "batch_size: expected a positive integer, got 0"),
        (dict(max_seconds=-1.0), "max_seconds: expected a finite positive number"),
        (dict(images=torch.rand(2, 4, 4, 3) * 255), r"images: expected values in \[0, 1\]"),
        (dict(holdout=(torch.eye(4)[None], torch.rand(1, 4, 4, 3) - 1)), r"holdout images: expected values in \[0, 1\]"),
    ],
)
def test_fit_nerf_bad_input(kwargs, message):
    args = dict(images=torch.rand(2, 4, 4, 3), c2ws=torch.eye(4).expand(2, 4, 4), focal=4.0, near=1.0, far=2.0, steps=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        fit_nerf(**args)


def test_nerf_synthetic_path_on_a_toy_scene_in_blender_format(scene, tmp_path):
    """What chapter 01's loader cell does with a real scene, on a toy one written in that format."""
    from minidiff3d.toyworld import load_blender, write_blender

    train, test = scene
    write_blender(train, tmp_path, "train")
    write_blender(test, tmp_path, "test")
    loaded, held = load_blender(tmp_path, "train"), load_blender(tmp_path, "test")
    result = fit_nerf(loaded.images, loaded.c2ws, loaded.focal, 1.8, 3.8, steps=150, batch_size=512, n_samples=48,
                      eval_every=150, holdout=(held.c2ws, held.images), show_progress=False, device="cpu")
    assert result.history["test_psnr"][-1] > 22.0


def test_fit_nerf_is_a_function_of_its_seed_and_leaves_the_global_rng_alone(monkeypatch):
    import minidiff3d.nerf

    g = torch.Generator().manual_seed(0)
    images, c2ws = torch.rand(2, 6, 6, 3, generator=g), orbit_camera(torch.tensor([10.0, 30.0]), torch.tensor([0.0, 90.0]))

    def fit(seed):
        result = fit_nerf(images, c2ws, 6.0, near=1.8, far=3.8, steps=3, batch_size=16, n_samples=8, n_fine=4,
                          eval_every=1, seed=seed, show_progress=False, device="cpu")
        return result.history["loss"], [p.detach().clone() for p in result.field.parameters()]

    state = torch.random.get_rng_state()
    losses, weights = fit(0)
    assert torch.equal(torch.random.get_rng_state(), state)
    # Global draws in the middle of a run (here at every logged step) change nothing: the fit draws only from its own generator.
    monkeypatch.setattr(minidiff3d.nerf, "psnr", lambda *a: (torch.rand(1), psnr(*a))[1])
    other_losses, other_weights = fit(0)
    assert other_losses == losses and all(torch.equal(a, b) for a, b in zip(other_weights, weights))
    assert fit(1)[0] != losses
