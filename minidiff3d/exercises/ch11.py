"""Chapter 11's exercises: a unit quaternion as a rotation matrix, a 3-D Gaussian projected to the image (EWA), the
compositing weights of one pixel's splats, and 3DGS's choice between cloning and splitting, each checked against the
function the package itself uses."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import splatting
from ..cameras import orbit_camera
from ..scene.gaussians import Gaussians
from ..splatting import covariance_3d, quaternion_to_rotation
from ..validation import check_positive, check_positive_int, check_tensor
from . import Exercise, register, repeat


def _count(g, low, high):
    return int(torch.randint(low, high, (1,), generator=g))


def _uniform(g, low, high, shape=()):
    return torch.rand(shape, generator=g) * (high - low) + low


def _close(a, b, atol=1e-4):
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    return a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=1e-4, equal_nan=True)


def _unit(q):
    return F.normalize(torch.as_tensor(q, dtype=torch.float32).reshape(-1, 4), dim=-1)


# 1. A unit quaternion as a rotation matrix

def _rotation_cases(g):
    def case(q):
        return dict(quaternions=_unit(q))

    half = math.sqrt(0.5)
    edges = [("no rotation: (1, 0, 0, 0)", case([1.0, 0, 0, 0])),
             ("a quarter turn about z", case([half, 0, 0, half])),
             ("half a turn about x: w = 0", case([0.0, 1, 0, 0])),
             ("q and -q: the same rotation", case([[0.5, 0.5, -0.5, 0.5], [-0.5, -0.5, 0.5, -0.5]])),
             ("a third of a turn about (1, 1, 1): the axes trade places", case([0.5, 0.5, 0.5, 0.5]))]

    return edges + repeat(5, "random", lambda: case(torch.randn(_count(g, 1, 9), 4, generator=g)))


def _rotation_diagnose(got, expected, kwargs):
    q = kwargs["quaternions"]
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return f"one 3x3 matrix per quaternion: [N,3,3], here {list(expected.shape)}."
    if _close(got, quaternion_to_rotation(q[:, [3, 0, 1, 2]])):
        return ("the quaternion was read as (x, y, z, w): the package's, like 3DGS's, are (w, x, y, z), the real part "
                "first. (1, 0, 0, 0) is no rotation.")
    if _close(got, expected.mT):
        return ("that is the transpose, the inverse rotation: the off-diagonal terms are 2(xy - wz) above the diagonal "
                "in row 0, 2(xy + wz) below it in row 1.")
    if not _close(got @ got.mT, torch.eye(3).expand_as(got)):
        return ("the result is not a rotation (R Rᵀ ≠ I): check the diagonal, 1 - 2(y² + z²), 1 - 2(x² + z²), "
                "1 - 2(x² + y²).")
    return "write out R(q) entry by entry, as the markdown above gives it, with w the first entry."


# 2. A 3-D Gaussian seen by a camera (EWA)

def project_gaussians(means, covariances, c2w, height, width, focal):
    """``mean2d [N,2]`` (pixels, u right, v down) and ``cov2d [N,2,2]`` (px², with the 0.3 px² dilation) of Gaussians
    ``means [N,3]``, ``covariances [N,3,3]`` seen from ``c2w [4,4]``: ``splatting.project_gaussians``."""
    sizes: dict[str, int] = {}
    check_tensor("means", means, shape=["N", 3], sizes=sizes, floating=True)
    check_tensor("covariances", covariances, shape=["N", 3, 3], sizes=sizes, floating=True)
    check_tensor("c2w", c2w, shape=[4, 4], floating=True)
    height, width = check_positive_int("height", height), check_positive_int("width", width)
    projected = splatting.project_gaussians(means, covariances, c2w, height, width, check_positive("focal", focal))
    return projected["mean2d"], projected["cov2d"]


def _projection_cases(g):
    def case(means, scales, quaternions, c2w, height=32, width=32, focal=40.0):
        means = torch.as_tensor(means, dtype=torch.float32).reshape(-1, 3)
        covariances = covariance_3d(torch.as_tensor(scales, dtype=torch.float32).reshape(-1, 3), _unit(quaternions))
        return dict(means=means, covariances=covariances, c2w=c2w, height=height, width=width, focal=focal)

    front = torch.eye(4)  # the camera at (0, 0, 3) looking down -z: the world's axes are the camera's
    front[2, 3] = 3.0
    tilted = [0.9, 0.3, -0.2, 0.25]
    edges = [("a round Gaussian straight ahead, the camera on the world's axes",
              case([0, 0, 0.5], [0.1] * 3, [1, 0, 0, 0], front)),
             ("off the axis: the Jacobian's depth column counts",
              case([0.4, -0.3, 0.2], [0.2, 0.05, 0.1], tilted, front)),
             ("the camera turned (elevation 20°, azimuth 60°): the world-to-camera rotation counts",
              case([[0.1, 0.2, 0.0], [-0.3, 0.0, 0.3]], [[0.3, 0.02, 0.1], [0.05, 0.2, 0.1]], [tilted, [1, 0, 0, 0]],
                   orbit_camera(20.0, 60.0, 3.0))),
             ("a flat Gaussian seen edge-on: the dilation keeps it a pixel wide",
              case([0, 0, 0], [0.3, 1e-4, 0.3], [1, 0, 0, 0], front)),
             ("from above, a wide image", case([[0.2, 0.1, -0.1], [0.0, -0.2, 0.3], [-0.3, 0.3, 0.0]],
                                                [[0.1, 0.1, 0.02]] * 3, [tilted] * 3, orbit_camera(60.0, 30.0, 2.5),
                                                height=24, width=48, focal=30.0))]

    def random():
        n = _count(g, 1, 7)
        c2w = orbit_camera(float(_uniform(g, -30, 70)), float(_uniform(g, -180, 180)), float(_uniform(g, 2.0, 4.0)))
        return case(_uniform(g, -0.5, 0.5, (n, 3)), torch.exp(torch.randn(n, 3, generator=g) - 2.5),
                    torch.randn(n, 4, generator=g), c2w, _count(g, 8, 65), _count(g, 8, 65), float(_uniform(g, 20, 80)))

    return edges + repeat(4, "random", random)


def _projection_variant(means, covariances, c2w, height, width, focal, rotation=None, v_sign=-1.0, dilation=0.3,
                        depth_column=True, translate=True):
    """The projection with one of its parts changed: the mistakes that ``_projection_diagnose`` recognises."""
    rotation = c2w[:3, :3].T if rotation is None else rotation
    t = ((means - c2w[:3, 3]) if translate else means) @ rotation.T
    x, y, depth = t[:, 0], t[:, 1], -t[:, 2]
    mean2d = torch.stack([width / 2 + focal * x / depth, height / 2 + v_sign * focal * y / depth], -1)
    zero = torch.zeros_like(depth)
    keep = 1.0 if depth_column else 0.0
    jacobian = torch.stack([focal / depth, zero, keep * focal * x / depth**2,
                            zero, v_sign * focal / depth, keep * v_sign * focal * y / depth**2], -1).reshape(-1, 2, 3)
    m = jacobian @ rotation
    return mean2d, m @ covariances @ m.mT + dilation * torch.eye(2)


def _projection_diagnose(got, expected, kwargs):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "return two tensors: mean2d [N,2] and cov2d [N,2,2]."
    mean2d, cov2d = (torch.as_tensor(x) for x in got)
    want_mean, want_cov = expected
    if mean2d.shape != want_mean.shape or cov2d.shape != want_cov.shape:
        return f"mean2d is [N,2] and cov2d [N,2,2], here {list(want_mean.shape)} and {list(want_cov.shape)}."
    variant = lambda **change: _projection_variant(**kwargs, **change)  # noqa: E731
    if _close(cov2d, want_cov):  # only the mean is wrong
        if _close(mean2d[:, 0], want_mean[:, 0]) and _close(mean2d[:, 1], variant(v_sign=1.0)[0][:, 1]):
            return "mean2d's v is upside down: v = H/2 - f y/d, the image's rows run down, the camera's y points up."
        if _close(mean2d, want_mean - torch.tensor([kwargs["width"], kwargs["height"]]) / 2):
            return "mean2d is measured from the image's centre: add (W/2, H/2), where the camera's axis meets the image."
        return "mean2d = (W/2 + f t_x/d, H/2 - f t_y/d), t the mean in the camera's frame and d = -t_z its depth."
    if _close(cov2d, variant(dilation=0.0)[1]):
        return ("the 0.3 px² dilation is missing: 3DGS adds 0.3 to the diagonal of every projected covariance, so that "
                "a tiny or edge-on Gaussian still covers about a pixel instead of vanishing between pixel centres.")
    if _close(cov2d, variant(dilation=0.3 ** 2)[1]) or _close(cov2d, variant(dilation=math.sqrt(0.3))[1]):
        return "the dilation is a variance, 0.3 px², added to the diagonal as it stands: not squared, not its root."
    if _close(cov2d, variant(rotation=kwargs["c2w"][:3, :3])[1]):
        return ("W is c2w's rotation itself, which takes the camera's axes to the world's: the world-to-camera "
                "rotation is its inverse, the transpose c2w[:3, :3].T.")
    if _close(cov2d, variant(v_sign=1.0)[1]):
        return ("the v row has the wrong sign: v points down the image while the camera's y points up, "
                "v = H/2 - f y/d, so the row is (0, -f/d, -f y/d²) and the off-diagonal entry of cov2d changes sign.")
    if _close(cov2d, variant(depth_column=False)[1]):
        return ("the Jacobian's third column is missing: u = W/2 + f x/d also moves with the depth, du/dz = f x/d² "
                "(and dv/dz = -f y/d²), which shears a Gaussian that is off the axis.")
    if _close(cov2d, variant(translate=False)[1]):
        return "subtract the camera's position, c2w[:3, 3], from the means before turning them into the camera's frame."
    return ("t = W (μ - c) with W = c2w[:3, :3].T; d = -t_z; J = [[f/d, 0, f t_x/d²], [0, -f/d, -f t_y/d²]]; "
            "cov2d = J W Σ Wᵀ Jᵀ + 0.3 I.")


# 3. The compositing weights of one pixel

def splat_weights(alphas):
    """``[K]`` weights ``α_i T_i`` of the splats covering one pixel, nearest first, from their ``alphas [K]`` in [0, 1]
    (opacity times the Gaussian's falloff at the pixel), with 3DGS's clamps and early stop.

    It is ``splatting.composite`` itself: K splats on a 1x1 image, centred on its pixel (so that each one's α is its
    opacity), one behind the other; a splat's weight is how much its colour moves the pixel, d rgb / d colour."""
    alphas = check_tensor("alphas", alphas, shape=["K"], floating=True).detach().double()
    if ((alphas < 0) | (alphas > 1)).any():
        raise ValueError(f"alphas: expected values in [0, 1], got [{alphas.min().item():.4g}, "
                         f"{alphas.max().item():.4g}]")
    k = len(alphas)
    colors = torch.zeros(k, 3, dtype=torch.float64, requires_grad=True)
    centred = torch.full((k, 2), 0.5, dtype=torch.float64)  # the pixel's centre: the falloff is exp(0) = 1
    covariances = torch.eye(2, dtype=torch.float64).expand(k, 2, 2)
    depths = torch.arange(1, k + 1, dtype=torch.float64)  # the given order is front to back
    black = torch.zeros(3, dtype=torch.float64)
    rgb = splatting.composite(centred, covariances, depths, alphas, colors, 1, 1, black)["rgb"]
    (weights,) = torch.autograd.grad(rgb[..., 0].sum(), colors)
    return weights[:, 0].float()


def _weights_cases(g):
    def case(alphas):
        return dict(alphas=torch.as_tensor(alphas, dtype=torch.float32))

    edges = [("one splat", case([0.5])),
             ("faint splats, under 1/255 each: nothing", case([0.002, 0.003, 0.001])),
             ("a faint one between two: skipped, the light it would take goes on", case([0.4, 0.003, 0.6, 0.3])),
             ("an opaque splat is capped at 0.99: 1% gets through", case([1.0, 0.6, 0.5])),
             ("the light runs out: the splats after T < 1e-4 do not count", case([0.999, 0.98, 0.9, 0.5, 0.7])),
             ("45 weak splats of 0.2: T_i = 0.8^i falls under 1e-4 at i = 42", case([0.2] * 45))]

    def random():
        k = _count(g, 1, 31)
        alphas = torch.rand(k, generator=g) ** 2
        faint, dense = torch.rand(k, generator=g) < 0.15, torch.rand(k, generator=g) < 0.2
        alphas = torch.where(faint, alphas * 0.003, torch.where(dense, 0.9 + 0.08 * torch.rand(k, generator=g), alphas))
        if torch.rand(1, generator=g) < 0.3:  # one over the cap: two would leave T = 0.01² = 1e-4, on the stop's edge
            alphas[_count(g, 0, k)] = 1.0
        return case(alphas)

    return edges + repeat(4, "random", random)


def _weights_variant(alphas, cap=True, cutoff=True, stop=True, inclusive=False, reverse=False):
    """``splat_weights`` by hand with one of its rules changed: the mistakes ``_weights_diagnose`` recognises."""
    alphas = alphas.double().flip(0) if reverse else alphas.double()
    alphas = alphas.clamp(max=splatting.ALPHA_MAX) if cap else alphas
    alphas = torch.where(alphas >= splatting.ALPHA_MIN, alphas, 0.0) if cutoff else alphas
    through = torch.cumprod(1 - alphas, 0)
    transmittance = through if inclusive else torch.cat([torch.ones(1, dtype=through.dtype), through[:-1]])
    weights = alphas * transmittance * ((transmittance > splatting.TRANSMITTANCE_MIN) if stop else 1.0)
    return weights.flip(0) if reverse else weights


def _weights_diagnose(got, expected, kwargs):
    alphas = kwargs["alphas"]
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        if got.ndim == 1 and len(got) < len(alphas):
            return "keep one weight per splat, [K]: a faint splat's weight is 0, it is not removed."
        return f"one weight per splat: [K], here {list(expected.shape)}."
    close = lambda **change: _close(got, _weights_variant(alphas, **change), atol=1e-8)  # noqa: E731
    if close(inclusive=True) or close(inclusive=True, stop=False):
        return ("T_i includes the splat's own (1 - α_i): the light reaching splat i is what the splats *before* it let "
                "through, T_i = Π_{j<i} (1 - α_j), so the first splat sees T = 1 (an exclusive cumulative product).")
    if close(reverse=True) or close(reverse=True, stop=False):
        return ("that is back to front: the alphas come nearest first, and the nearest splat is the one that sees all "
                "the light (T_0 = 1).")
    if close(cap=False):
        return ("α is capped at 0.99 (3DGS's clamp): no splat is fully opaque, so at least 1% of the light gets past "
                "it and the splats behind still receive a gradient.")
    if close(cutoff=False):
        return ("a splat with α < 1/255 contributes nothing: its α counts as 0, for its weight and for the light it "
                "would take from the splats behind.")
    if close(stop=False):
        return ("once T has fallen below 1e-4 the remaining splats do not count (3DGS's early stop): weight 0 for "
                "every splat whose T_i ≤ 1e-4.")
    return ("clamp α to at most 0.99, set α < 1/255 to 0, T_i = Π_{j<i} (1 - α_j), weight α_i T_i where T_i > 1e-4 "
            "and 0 after.")


# 4. Clone or split

def densify_masks(scales, grad, grad_threshold, extent, percent_dense):
    """``(clone [N], split [N])``: which Gaussians of standard deviations ``scales [N,3]`` and mean image-space gradient
    norm ``grad [N]`` ``Gaussians.densify`` clones and which it splits, read off the Gaussians it returns."""
    sizes: dict[str, int] = {}
    check_tensor("scales", scales, shape=["N", 3], sizes=sizes, floating=True)
    check_tensor("grad", grad, shape=["N"], sizes=sizes, floating=True)
    if (scales <= 0).any():
        raise ValueError(f"scales: expected positive standard deviations, got a minimum of {scales.min().item():.4g}")
    n = len(scales)
    means = torch.zeros(n, 3)
    means[:, 0] = torch.arange(n)  # each Gaussian's index, to recognise it after densify
    model = Gaussians(means, scales.log(), torch.tensor([1.0, 0, 0, 0]).expand(n, 4), torch.zeros(n), torch.zeros(n, 3))
    model.grad_sum, model.seen = grad.detach().clone(), torch.ones(n)  # the average gradient is grad itself
    counts = model.densify(torch.optim.Adam(model.parameters()), grad_threshold, extent, percent_dense, min_opacity=0.0)
    # densify keeps every Gaussian it does not split (nothing is faint: min_opacity 0), then appends the clones
    kept = n - counts["split"]
    index = model.means[:, 0].round().long()
    split = torch.ones(n, dtype=torch.bool)
    split[index[:kept]] = False
    clone = torch.zeros(n, dtype=torch.bool)
    clone[index[kept:kept + counts["cloned"]]] = True
    return clone, split


def _densify_cases(g):
    def case(scales, grad, grad_threshold=0.01, extent=2.0, percent_dense=2.0**-6):
        return dict(scales=torch.as_tensor(scales, dtype=torch.float32).reshape(-1, 3),
                    grad=torch.as_tensor(grad, dtype=torch.float32).reshape(-1),
                    grad_threshold=grad_threshold, extent=extent, percent_dense=percent_dense)

    # percent_dense · extent = 1/32: a Gaussian is small when its largest scale is at most 0.03125
    edges = [("hot and small: cloned; hot and large: split; cold: left alone",
              case([[0.01] * 3, [0.1] * 3, [0.01] * 3, [0.1] * 3], [0.02, 0.02, 0.001, 0.001])),
             ("a gradient exactly at the threshold counts", case([[0.01] * 3, [0.1] * 3], [0.01, 0.01])),
             ("long and thin: a small mean scale, one long axis: split", case([[0.08, 0.005, 0.005]], [0.05])),
             ("a large scene: extent 10 puts the limit at 0.1", case([[0.05] * 3, [0.2, 0.01, 0.01]], [0.05, 0.05],
                                                             extent=10.0, percent_dense=0.01)),
             ("a largest scale exactly percent_dense · extent is still small: cloned",
              case([[0.03125, 0.01, 0.01], [0.03126, 0.01, 0.01]], [0.05, 0.05])),
             ("nothing hot: nothing changes", case([[0.01] * 3, [0.5] * 3, [0.03] * 3], [0.0, 0.009, 0.0099]))]

    def random():
        n = _count(g, 1, 41)
        extent, percent_dense = float(_uniform(g, 0.5, 4.0)), float(_uniform(g, 0.005, 0.05))
        scales = percent_dense * extent * torch.exp(torch.randn(n, 3, generator=g))  # either side of the threshold
        threshold = float(_uniform(g, 0.001, 0.02))
        return case(scales, torch.rand(n, generator=g) * 2 * threshold, threshold, extent, percent_dense)

    return edges + repeat(4, "random", random)


def _densify_diagnose(got, expected, kwargs):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "return two boolean masks, (clone, split), each [N]."
    clone, split = (torch.as_tensor(x) for x in got)
    if clone.shape != expected[0].shape or split.shape != expected[1].shape:
        return f"one entry per Gaussian in each mask: [N], here {list(expected[0].shape)}."
    clone, split = clone.bool(), split.bool()
    scales, grad, threshold = kwargs["scales"], kwargs["grad"], kwargs["grad_threshold"]
    limit = kwargs["percent_dense"] * kwargs["extent"]

    def masks(hot, small):
        return hot & small, hot & ~small

    def same(candidate):
        return torch.equal(clone, candidate[0]) and torch.equal(split, candidate[1])

    hot, small = grad >= threshold, scales.max(-1).values <= limit
    if (clone & split).any():
        return "a Gaussian is cloned or split, never both: split = hot and not small."
    if same(masks(hot, scales.mean(-1) <= limit)):
        return ("the size of a Gaussian is its *largest* scale, not the mean of its three: a long thin Gaussian "
                "with one long axis is large and is split.")
    if same(masks(grad > threshold, small)):
        return "a gradient equal to the threshold counts as hot: grad ≥ grad_threshold."
    if same(masks(hot, scales.max(-1).values < limit)):
        return "a largest scale equal to percent_dense · extent is still small (cloned): ≤, not <."
    if same(masks(hot, scales.max(-1).values <= kwargs["percent_dense"])):
        return "percent_dense is a fraction of the scene: compare the largest scale with percent_dense · extent."
    if torch.equal(clone, expected[1]) and torch.equal(split, expected[0]):
        return "clone and split are swapped: the small ones are cloned (copied in place), the large ones split in two."
    if torch.equal(clone, expected[0]) and torch.equal(split, ~small):
        return "only hot Gaussians are split: a large Gaussian with a small gradient is left alone."
    return ("hot = grad ≥ grad_threshold, small = largest scale ≤ percent_dense · extent; clone = hot and small, "
            "split = hot and not small.")


register(Exercise("quaternion_to_rotation", "11", quaternion_to_rotation, _rotation_cases, ("rotations",),
                  _rotation_diagnose))
register(Exercise("project_gaussians", "11", project_gaussians, _projection_cases, ("mean2d", "cov2d"),
                  _projection_diagnose))
register(Exercise("splat_weights", "11", splat_weights, _weights_cases, ("weights",), _weights_diagnose, atol=1e-8))
register(Exercise("densify_masks", "11", densify_masks, _densify_cases, ("clone", "split"), _densify_diagnose))
