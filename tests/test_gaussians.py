"""3-D Gaussians as a geometry part: their start, their renders, and 3DGS's adaptive density control by hand."""

import math

import pytest
import torch

from minidiff3d.cameras import focal_from_fov, orbit_camera
from minidiff3d.scene.gaussians import Gaussians, GaussiansConfig
from minidiff3d.splatting import render_gaussians

C2W, SIZE = orbit_camera(15.0, 30.0, 2.8), 24
FOCAL, WHITE = focal_from_fov(40.0, SIZE), torch.ones(3)


def test_the_start_is_a_ball_of_small_faint_grey_gaussians():
    model = GaussiansConfig(count=500, radius=0.5, scale=0.02, opacity=0.1).build(torch.Generator().manual_seed(0))
    assert len(model) == 500 and model.means.norm(dim=-1).max() <= 0.5
    assert torch.allclose(model.scales, torch.full((500, 3), 0.02)) and torch.allclose(model.opacities, torch.full((500,), 0.1))
    assert torch.allclose(model.colors, torch.full((500, 3), 0.5)) and torch.allclose(model.rotations[:, 0], torch.ones(500))
    with pytest.raises(ValueError, match="geometry.opacity"):
        GaussiansConfig(opacity=1.5)


def test_render_is_the_splatter_on_the_activated_parameters():
    model = Gaussians.in_ball(200, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.quaternions.normal_(generator=torch.Generator().manual_seed(2))  # unnormalised: render normalises
        model.color_logits.normal_(generator=torch.Generator().manual_seed(3))
    out = model.render(C2W, SIZE, SIZE, FOCAL, WHITE)
    by_hand = render_gaussians(model.means, model.scales, torch.nn.functional.normalize(model.quaternions, dim=-1),
                               model.opacities, model.colors, C2W, SIZE, SIZE, FOCAL)
    assert all(torch.allclose(out[k], by_hand[k], atol=1e-6) for k in out)


def three_gaussians():
    """A small one, a large one and a faint one, apart from each other in front of the camera."""
    means = torch.tensor([[0.0, -0.3, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, 0.3]])
    log_scales = torch.log(torch.tensor([[0.005] * 3, [0.2, 0.1, 0.05], [0.02] * 3]))
    quaternions = torch.tensor([[1.0, 0, 0, 0], [math.cos(0.3), 0, 0, math.sin(0.3)], [1.0, 0, 0, 0]])
    opacity_logits = torch.logit(torch.tensor([0.5, 0.5, 0.001]))
    return Gaussians(means, log_scales, quaternions, opacity_logits, torch.randn(3, 3, generator=torch.Generator().manual_seed(4)))


def test_image_space_gradients_accumulate_for_the_gaussians_a_render_saw():
    model = three_gaussians()
    for azimuth in (0.0, 20.0):
        out = model.render(orbit_camera(0.0, azimuth, 2.8), SIZE, SIZE, FOCAL, WHITE)
        (out["rgb"] ** 2).sum().backward()
        model.accumulate()
    assert model.seen[:2].tolist() == [2.0, 2.0] and (model.grad_sum[:2] > 0).all()


def test_densify_clones_the_small_splits_the_large_prunes_the_faint_and_carries_adams_moments():
    model = three_gaussians()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = model.render(C2W, SIZE, SIZE, FOCAL, WHITE)
    out["rgb"].sum().backward()
    optimizer.step()
    before = {name: getattr(model, name).detach().clone() for name in ("means", "log_scales", "opacity_logits")}
    moments = optimizer.state[model.means]["exp_avg"].clone()
    model.grad_sum, model.seen = torch.tensor([1.0, 1.0, 0.0]), torch.ones(3)  # the first two are "hot"
    counts = model.densify(optimizer, grad_threshold=0.5, extent=1.0, percent_dense=0.05,
                           generator=torch.Generator().manual_seed(5))
    assert counts == {"cloned": 1, "split": 1, "pruned": 1}
    assert len(model) == 4  # the small one and its clone; the large one's two halves; the faint one gone
    assert torch.equal(model.means[0], before["means"][0]) and torch.equal(model.means[1], before["means"][0])
    assert torch.allclose(model.log_scales[2:], (before["log_scales"][1] - math.log(1.6)).expand(2, 3))
    state = optimizer.state[model.means]
    assert torch.equal(state["exp_avg"][0], moments[0]) and state["exp_avg"][1:].abs().sum() == 0
    assert all(any(p is q for q in optimizer.param_groups[0]["params"]) for p in model.parameters())
    out = model.render(C2W, SIZE, SIZE, FOCAL, WHITE)  # and training goes on with the new parameters
    optimizer.zero_grad()
    out["rgb"].sum().backward()
    optimizer.step()
    assert model.seen.shape == (4,) and model.seen.sum() == 0


def test_an_opacity_reset_caps_the_opacities_and_restarts_their_moments():
    model = three_gaussians()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.render(C2W, SIZE, SIZE, FOCAL, WHITE)["rgb"].sum().backward()
    optimizer.step()
    model.reset_opacity(optimizer)
    assert model.opacities.max() <= 0.01 + 1e-6 and model.opacities[2].item() == pytest.approx(0.001, rel=1e-2)  # below: kept
    assert optimizer.state[model.opacity_logits]["exp_avg"].abs().sum() == 0


def test_the_splat_renderer_has_the_marchers_call_and_maps():
    from minidiff3d.marcher import SolidBackground
    from minidiff3d.scene.splat_renderer import SplatRendererConfig

    model = Gaussians.in_ball(300, generator=torch.Generator().manual_seed(6))
    c2w = torch.stack([orbit_camera(15.0, a, 2.8) for a in (0.0, 120.0)])
    grey = SolidBackground((0.5, 0.5, 0.5))
    maps = SplatRendererConfig().build().render(model, c2w, SIZE, SIZE, FOCAL, grey, "lambertian")
    assert {k: tuple(v.shape) for k, v in maps.items()} == {"rgb": (2, 3, SIZE, SIZE), "opacity": (2, 1, SIZE, SIZE),
                                                           "depth": (2, 1, SIZE, SIZE)}
    for i in range(2):  # each view is the splatter's over the grey background
        by_hand = render_gaussians(model.means, model.scales, model.rotations, model.opacities, model.colors, c2w[i],
                                   SIZE, SIZE, FOCAL, background=(0.5, 0.5, 0.5))
        assert torch.allclose(maps["rgb"][i].permute(1, 2, 0), by_hand["rgb"], atol=1e-6)
        assert torch.allclose(maps["opacity"][i, 0], by_hand["alpha"], atol=1e-6)
