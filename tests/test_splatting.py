"""The Gaussian splatter against closed forms, a per-Gaussian loop, finite differences, and its defining properties."""

import math
import sys
import types

import pytest
import torch

from minidiff3d.cameras import focal_from_fov, orbit_camera
from minidiff3d.scene.gaussians import Gaussians
from minidiff3d.splatting import DILATION, covariance_3d, gsplat_camera, project_gaussians, quaternion_to_rotation, \
    render_gaussians

torch.set_default_dtype(torch.float32)
C2W = orbit_camera(0.0, 0.0, 3.0)  # on +x, looking at the origin: image x is world +y, image y is world -z
SIZE, FOCAL = 32, focal_from_fov(40.0, 32)


def scene(n, seed=0, spread=0.5):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    return dict(means=(torch.rand(n, 3, generator=g) - 0.5) * 2 * spread, scales=0.05 + 0.1 * torch.rand(n, 3, generator=g),
                rotations=q, opacities=0.2 + 0.7 * torch.rand(n, generator=g), colors=torch.rand(n, 3, generator=g))


def by_loop(means, scales, rotations, opacities, colors, c2w, height, width, focal, background=(1.0, 1.0, 1.0),
            box_and_stop=False):
    """The reference: every Gaussian over every pixel, one at a time in depth order. With ``box_and_stop``, also the
    splatter's two shortcuts: each Gaussian only within its 3σ box of pixels, and nothing once T < 1e-4."""
    p = project_gaussians(means, covariance_3d(scales, rotations), c2w, height, width, focal)
    grid = dict(dtype=means.dtype)
    ys, xs = torch.meshgrid(torch.arange(height, **grid) + 0.5, torch.arange(width, **grid) + 0.5, indexing="ij")
    rgb, transmittance = torch.zeros(height, width, 3, **grid), torch.ones(height, width, **grid)
    for i in torch.argsort(p["depth"]).tolist():
        d = torch.stack([xs - p["mean2d"][i, 0], ys - p["mean2d"][i, 1]], -1)
        inverse = torch.linalg.inv(p["cov2d"][i])
        alpha = (opacities[i] * torch.exp(-0.5 * torch.einsum("hwi,ij,hwj->hw", d, inverse, d))).clamp(max=0.99)
        alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
        weight = transmittance * alpha
        if box_and_stop:
            half = 3 * p["cov2d"][i].diagonal().sqrt().detach()  # pixel index k is in if its centre k + 0.5 is,
            low, high = torch.floor(p["mean2d"][i].detach() - half - 0.5), torch.ceil(p["mean2d"][i].detach() + half - 0.5)
            inside = (xs - 0.5 >= low[0]) & (xs - 0.5 <= high[0]) & (ys - 0.5 >= low[1]) & (ys - 0.5 <= high[1])
            alpha = alpha * inside * (transmittance > 1e-4)  # the box rounded outward; then the pixel is done
            weight = transmittance * alpha
        rgb = rgb + weight[..., None] * colors[i]
        transmittance = transmittance * (1 - alpha)
    return rgb + transmittance[..., None] * torch.tensor(background, **grid), 1 - transmittance


def test_rotation_matrices_are_rotations_and_match_the_axis_angle_form():
    q = torch.nn.functional.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    r = quaternion_to_rotation(q)
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(5), atol=1e-5)
    turn = torch.tensor([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]])  # 90° about z
    assert torch.allclose(quaternion_to_rotation(turn)[0], torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), atol=1e-6)


def test_one_isotropic_gaussian_is_the_closed_form_2d_gaussian():
    sigma, opacity, distance = 0.1, 0.8, 3.0
    out = render_gaussians(torch.zeros(1, 3), torch.full((1, 3), sigma), torch.tensor([[1.0, 0, 0, 0]]),
                           torch.tensor([opacity]), torch.tensor([[1.0, 0.0, 0.0]]), C2W, SIZE, SIZE, FOCAL)
    variance = (FOCAL * sigma / distance) ** 2 + DILATION  # pixels²: the projected σ, plus the dilation
    ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    alpha = opacity * torch.exp(-((xs - SIZE / 2) ** 2 + (ys - SIZE / 2) ** 2) / (2 * variance))
    alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
    assert torch.allclose(out["alpha"], alpha, atol=1e-5)
    assert torch.allclose(out["rgb"][..., 1], 1 - alpha, atol=1e-5)  # white background behind a red splat
    assert torch.allclose(out["depth"], alpha * distance, atol=1e-4)


def test_an_anisotropic_gaussian_projects_its_long_axis_and_the_tiles_match_a_loop():
    # long along world y (image x), short along z (image y)
    args = dict(means=torch.zeros(1, 3), scales=torch.tensor([[0.05, 0.3, 0.05]]), rotations=torch.tensor([[1.0, 0, 0, 0]]),
                opacities=torch.tensor([0.9]), colors=torch.tensor([[0.2, 0.4, 0.6]]))
    cov = project_gaussians(args["means"], covariance_3d(args["scales"], args["rotations"]), C2W, SIZE, SIZE, FOCAL)["cov2d"][0]
    assert torch.allclose(cov, torch.diag(torch.tensor([(FOCAL * 0.3 / 3) ** 2, (FOCAL * 0.05 / 3) ** 2])) + DILATION * torch.eye(2),
                          atol=1e-4)
    for n, seed in ((1, 0), (40, 1), (300, 2)):
        case = scene(n, seed) if n > 1 else args
        out = render_gaussians(**case, c2w=C2W, height=SIZE, width=40, focal=FOCAL)
        rgb, alpha = by_loop(**case, c2w=C2W, height=SIZE, width=40, focal=FOCAL)
        assert torch.allclose(out["alpha"], alpha, atol=1e-4) and torch.allclose(out["rgb"], rgb, atol=1e-4)


def test_two_overlapping_gaussians_composite_nearest_first_whatever_their_order():
    near, far = torch.tensor([[0.5, 0.0, 0.0]]), torch.tensor([[-0.5, 0.0, 0.0]])  # the camera is on +x
    red, blue = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    common = dict(scales=torch.full((2, 3), 0.2), rotations=torch.tensor([[1.0, 0, 0, 0]] * 2),
                  opacities=torch.tensor([0.9, 0.9]), c2w=C2W, height=SIZE, width=SIZE, focal=FOCAL)
    a = render_gaussians(torch.cat([near, far]), colors=torch.cat([red, blue]), **common)
    b = render_gaussians(torch.cat([far, near]), colors=torch.cat([blue, red]), **common)
    centre = a["rgb"][SIZE // 2, SIZE // 2]
    assert torch.allclose(a["rgb"], b["rgb"]) and centre[0] > 0.85 and centre[2] < 0.15  # red, in front, covers blue
    # by hand at that pixel, whose centre is half a pixel off both means in x and y:
    # α = 0.9 exp(-½ (0.5² + 0.5²) / σ²), σ² = (f 0.2 / distance)² + 0.3, the near one 2.5 away, the far one 3.5
    a_near, a_far = (0.9 * math.exp(-0.25 / ((FOCAL * 0.2 / d) ** 2 + DILATION)) for d in (2.5, 3.5))
    rest = (1 - a_near) * (1 - a_far)  # the white background's share
    expected = torch.tensor([a_near + rest, rest, (1 - a_near) * a_far + rest])
    assert torch.allclose(centre, expected, atol=1e-5)


def test_the_image_does_not_depend_on_the_order_of_the_gaussians():
    case = scene(200, 3)
    order = torch.randperm(200, generator=torch.Generator().manual_seed(4))
    a = render_gaussians(**case, c2w=C2W, height=SIZE, width=SIZE, focal=FOCAL)
    b = render_gaussians(**{k: v[order] for k, v in case.items()}, c2w=C2W, height=SIZE, width=SIZE, focal=FOCAL)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_gradients_match_finite_differences():
    case = {k: v.double() for k, v in scene(6, 5, spread=0.3).items()}
    names = ("means", "scales", "opacities", "colors")
    weights = torch.rand(12, 12, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)

    def loss(**params):
        out = render_gaussians(**params, c2w=C2W.double(), height=12, width=12, focal=focal_from_fov(40.0, 12))
        return (out["rgb"] * weights).sum() + out["depth"].sum() * 0.1

    params = {k: (v.clone().requires_grad_(k in names)) for k, v in case.items()}
    loss(**params).backward()
    for name in names:
        for index in [(0, 0), (3, 1), (5, 2)] if params[name].dim() == 2 else [(0,), (3,)]:
            plus, minus = ({k: v.detach().clone() for k, v in params.items()} for _ in range(2))
            plus[name][index] += 1e-6
            minus[name][index] -= 1e-6
            numeric = (loss(**plus) - loss(**minus)) / 2e-6
            assert params[name].grad[index].item() == pytest.approx(numeric.item(), rel=1e-4, abs=1e-6), (name, index)


@pytest.mark.parametrize("n,seed,opaque", [(300, 7, False), (120, 8, True)])
def test_images_and_gradients_match_the_loop_under_the_same_rules(n, seed, opaque):
    # Many overlapping splats (and, in the second case, fully opaque ones: α capped, T under 1e-4 after two): the
    # pairs listed row by row inside each ellipse, the early stop and every parameter's gradient, against the loop.
    case = {k: v.double() for k, v in scene(n, seed).items()}
    if opaque:
        case["opacities"][::3] = 1.0
    weights = torch.rand(SIZE, 40, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    images, grads = [], []
    for reference in (False, True):
        params = {k: v.clone().requires_grad_(True) for k, v in case.items()}
        common = dict(c2w=C2W.double(), height=SIZE, width=40, focal=FOCAL)
        if reference:
            rgb, alpha = by_loop(**params, **common, box_and_stop=True)
        else:
            out = render_gaussians(**params, **common)
            rgb, alpha = out["rgb"], out["alpha"]
        ((rgb * weights).sum() + (alpha ** 2).sum()).backward()
        images.append(torch.cat([rgb, alpha[..., None]], -1).detach())
        grads.append({k: v.grad for k, v in params.items()})
    assert torch.allclose(images[0], images[1], atol=1e-10)
    for name in case:
        assert torch.allclose(grads[0][name], grads[1][name], rtol=1e-6, atol=1e-8), name


@pytest.mark.parametrize("change,message", [
    (dict(means=torch.zeros(3, 2)), "means: expected shape"),
    (dict(colors=torch.zeros(4, 3)), "colors: expected shape"),
    (dict(rotations=torch.tensor([[2.0, 0, 0, 0]] * 3)), "rotations: expected unit quaternions"),
    (dict(means=torch.tensor([[float("nan"), 0, 0]] * 3)), "means: expected finite values"),
    (dict(opacities=torch.tensor([0.5, 1.5, 0.5])), r"opacities: expected values in \[0, 1\]"),
    (dict(scales=torch.zeros(3, 3)), "scales: expected positive"),
])
def test_bad_gaussians_get_named_errors(change, message):
    case = {**scene(3), **change}
    with pytest.raises(ValueError, match=message):
        render_gaussians(**case, c2w=C2W, height=8, width=8, focal=10.0)


def test_gaussians_behind_the_camera_or_off_screen_draw_nothing():
    case = scene(2)
    case["means"] = torch.tensor([[4.0, 0.0, 0.0], [0.0, 30.0, 0.0]])  # behind the camera; far off to the side
    out = render_gaussians(**case, c2w=C2W, height=SIZE, width=SIZE, focal=FOCAL)
    assert out["alpha"].abs().max() == 0 and torch.equal(out["rgb"], torch.ones(SIZE, SIZE, 3))


def test_gsplat_camera_puts_a_point_on_the_same_pixel_at_the_same_depth():
    # gsplat's camera: world to camera in OpenCV axes and a pinhole K; projected by hand, K (R p + t) / z.
    points = (torch.rand(50, 3, generator=torch.Generator().manual_seed(9)) - 0.5) * 1.5
    for c2w in (C2W, orbit_camera(35.0, 120.0, 2.5), orbit_camera(-20.0, 250.0, 4.0)):
        viewmat, intrinsics = gsplat_camera(c2w, SIZE, 40, FOCAL)
        camera = points @ viewmat[:3, :3].T + viewmat[:3, 3]
        pixels = camera @ intrinsics.T
        ours = project_gaussians(points, torch.eye(3).expand(50, 3, 3) * 0.01, c2w, SIZE, 40, FOCAL)
        assert torch.allclose(pixels[:, :2] / pixels[:, 2:], ours["mean2d"], atol=1e-4)
        assert torch.allclose(camera[:, 2], ours["depth"], atol=1e-5)
        assert torch.allclose(torch.linalg.det(viewmat[:3, :3]), torch.tensor(1.0), atol=1e-5)  # a rotation, not a mirror


@pytest.fixture
def fake_gsplat(monkeypatch):
    """A stand-in for gsplat's ``rasterization`` (its documented signature and outputs), drawing with this splatter from
    the camera it is handed back in gsplat's terms: it checks the plumbing around the call, not gsplat."""
    from minidiff3d import splatting

    def rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, eps2d, packed,
                      render_mode):
        assert (viewmats.shape, Ks.shape, near_plane, eps2d, packed, render_mode) == \
            ((1, 4, 4), (1, 3, 3), splatting.NEAR, splatting.DILATION, False, "RGB+D")
        c2w = torch.linalg.inv(torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0])) @ viewmats[0])
        p = project_gaussians(means, covariance_3d(scales, quats), c2w, height, width, Ks[0, 0, 0].item())
        means2d = p["mean2d"][None]
        out = splatting.composite(means2d[0], p["cov2d"], p["depth"], opacities, colors, height, width, torch.zeros(3))
        rendered = torch.cat([out["rgb"], out["depth"][..., None]], -1)[None]
        return rendered, out["alpha"][None, ..., None], {"means2d": means2d}

    monkeypatch.setitem(sys.modules, "gsplat", types.SimpleNamespace(rasterization=rasterization))
    monkeypatch.setattr(splatting, "_require_cuda", lambda means: None)


def test_the_gsplat_backend_hands_over_the_gaussians_camera_and_background(fake_gsplat):
    case = scene(60, 10)
    common = dict(c2w=orbit_camera(25.0, 70.0, 3.0), height=SIZE, width=40, focal=FOCAL, background=(0.2, 0.5, 0.9))
    ours, theirs = (render_gaussians(**case, **common, backend=backend) for backend in ("torch", "gsplat"))
    assert all(torch.allclose(ours[key], theirs[key], atol=1e-6) for key in ("rgb", "alpha", "depth"))


def test_densification_statistics_read_gsplats_image_space_means(fake_gsplat):
    grad_sums = []
    for backend in ("torch", "gsplat"):
        gaussians = Gaussians.in_ball(80, scale=0.05, opacity=0.5, generator=torch.Generator().manual_seed(11))
        out = gaussians.render(orbit_camera(10.0, 30.0, 2.5), SIZE, SIZE, FOCAL, torch.ones(3), backend=backend)
        out["rgb"].square().sum().backward()
        gaussians.accumulate()
        grad_sums.append(gaussians.grad_sum)
    assert grad_sums[0].abs().sum() > 0 and torch.allclose(grad_sums[0], grad_sums[1], atol=1e-6)


def test_the_gsplat_backend_without_gsplat_or_cuda_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "gsplat", None)  # not installed
    with pytest.raises(ImportError, match="backend='gsplat': needs the gsplat package"):
        render_gaussians(**scene(3), c2w=C2W, height=8, width=8, focal=10.0, backend="gsplat")
    monkeypatch.setitem(sys.modules, "gsplat", types.SimpleNamespace(rasterization=None))
    with pytest.raises(ValueError, match="backend='gsplat': expected the Gaussians on a CUDA device"):
        render_gaussians(**scene(3), c2w=C2W, height=8, width=8, focal=10.0, backend="gsplat")
    with pytest.raises(ValueError, match="backend: expected one of"):
        render_gaussians(**scene(3), c2w=C2W, height=8, width=8, focal=10.0, backend="cuda")
