"""3-D Gaussian splatting in pure PyTorch: project each Gaussian to the image, sort, and composite.

A scene is N Gaussians: ``means [N,3]``, ``scales [N,3]`` (standard deviations along the Gaussian's own
axes, in world units), ``rotations [N,4]`` (unit quaternions, w first), ``opacities [N]`` in [0,1] and
``colors [N,3]``. Rendering is three steps, each differentiable:

1. **Projection (EWA splatting).** The 3-D covariance is ``Σ = R S Sᵀ Rᵀ``. In the camera's frame
   (``W`` the world-to-camera rotation, ``t = W (μ - c)``) the perspective map is linearised at ``t``; its
   Jacobian ``J`` carries ``Σ`` to the image, ``Σ' = J W Σ Wᵀ Jᵀ`` (2x2, pixels²). 0.3 px² is added to the
   diagonal, as 3DGS does: a low-pass filter that makes every splat cover about a pixel, so that a tiny or
   edge-on Gaussian neither vanishes between pixel centres nor gives a singular ``Σ'``.
2. **Sorting** by the depth of each mean, nearest first.
3. **Compositing**, front to back, at each pixel centre ``p``: ``α_i = min(0.99, o_i exp(-½ dᵀ Σ'⁻¹ d))`` with
   ``d = p - μ'_i``; ``C = Σ_i c_i α_i T_i + T_N · background``, ``T_i = Π_{j<i} (1 - α_j)``. Splats with
   ``α < 1/255`` are skipped, and once ``T`` falls below 1e-4 the rest do not count (3DGS's early stop).

For speed the work is only where a splat reaches. 3DGS's CUDA rasterizer lists, for each 16x16 tile,
the Gaussians whose 3σ ellipse touches it, sorted by depth, and composites a tile per thread block. On
a CPU the tiles' padded batches cost (tiles x pixels x most Gaussians in any tile); here the tiles are
single pixels: every (pixel, Gaussian) pair where the splat's α reaches 1/255 (listed row by row inside
its 3σ box), sorted by pixel and depth, one flat batch, with each pixel's transmittance a cumulative sum
of log(1 - α) that restarts at the pixel (``benchmarks/splatting.py``). Autograd gives the backward
pass: written out by hand, as the CUDA rasterizers write theirs, it was no faster here. Cameras are
the course's (``cameras``: OpenGL camera axes, looking down -z).

On a CUDA machine with gsplat installed, ``backend="gsplat"`` hands the same Gaussians and camera to
gsplat's rasterizer (``rasterize_gsplat``): the same model (EWA, the 0.3 px² dilation, α in [1/255,
0.99]), with 3DGS's own culling (a circle of 3σ of the longer axis) and early stop (the splat that would
take T under 1e-4 is not drawn), so images differ from ours at the edges of those rules. It is optional,
never needed, and not run by the tests (gsplat has no CPU path); ``gsplat_camera`` is tested.
"""

from __future__ import annotations

import torch

from .validation import check_choice, check_positive, check_positive_int, check_tensor

DILATION = 0.3  # px², added to the projected covariance's diagonal
NEAR = 0.01  # Gaussians whose mean is nearer the camera than this are culled
ALPHA_MIN, ALPHA_MAX = 1.0 / 255.0, 0.99
TRANSMITTANCE_MIN = 1e-4
BACKENDS = ("torch", "gsplat")


def quaternion_to_rotation(quaternions: torch.Tensor) -> torch.Tensor:
    """``[N,4]`` unit quaternions (w, x, y, z) -> rotation matrices ``[N,3,3]``."""
    w, x, y, z = quaternions.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*quaternions.shape[:-1], 3, 3)


def covariance_3d(scales: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """``Σ = R S Sᵀ Rᵀ`` ``[N,3,3]`` from standard deviations ``scales [N,3]`` and unit quaternions ``rotations [N,4]``."""
    m = quaternion_to_rotation(rotations) * scales[:, None, :]  # R S: column k of R scaled by s_k
    return m @ m.transpose(1, 2)


def project_gaussians(means: torch.Tensor, covariances: torch.Tensor, c2w: torch.Tensor, height: int, width: int,
                      focal: float) -> dict[str, torch.Tensor]:
    """Each Gaussian's image: ``mean2d [N,2]`` (pixels, x right and y down, pixel centres at +0.5), ``cov2d [N,2,2]``
    (with the dilation), and ``depth [N]`` (distance in front of the camera along its axis)."""
    rotation = c2w[:3, :3].T  # world -> camera
    t = (means - c2w[:3, 3]) @ rotation.T  # [N,3], camera coordinates; the camera looks down -z
    depth = -t[:, 2]
    safe = depth.clamp(min=NEAR)  # culled Gaussians (depth < NEAR) still need finite numbers
    x, y = t[:, 0], t[:, 1]
    mean2d = torch.stack([width / 2 + focal * x / safe, height / 2 - focal * y / safe], -1)
    zero = torch.zeros_like(safe)
    # d(u, v)/d(x, y, z) of u = W/2 + f x/(-z), v = H/2 - f y/(-z), at z = -depth
    jacobian = torch.stack([focal / safe, zero, focal * x / safe ** 2,
                            zero, -focal / safe, -focal * y / safe ** 2], -1).reshape(-1, 2, 3)
    m = jacobian @ rotation
    cov2d = m @ covariances @ m.transpose(1, 2) + DILATION * torch.eye(2, dtype=means.dtype, device=means.device)
    return {"mean2d": mean2d, "cov2d": cov2d, "depth": depth}


def integer_runs(starts: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs of consecutive integers ``starts[i], starts[i] + 1, ...``, ``lengths[i]`` long, laid end to end:
    ``(owner [M], value [M])``, the run each entry belongs to and its integer. A loop over runs, without the loop."""
    device = lengths.device
    owner = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)
    offset = torch.arange(len(owner), device=device) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    return owner, starts.index_select(0, owner) + offset


def _pairs(mean2d: torch.Tensor, cov2d: torch.Tensor, conic: torch.Tensor, opacities: torch.Tensor,
           visible: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (pixel, Gaussian) pair where the pixel lies in the Gaussian's 3σ bounding box and the splat's α there
    reaches 1/255 (the rest add nothing): ``pixel [M]`` (row-major index) and ``gaussian [M]``, sorted by pixel and,
    within a pixel, in the Gaussians' given (depth) order.

    Row by row: each Gaussian's rows of its box, then in each row the run of pixels inside the ellipse where
    ``o exp(-½ dᵀΣ'⁻¹d) ≥ 1/255``, i.e. ``dᵀΣ'⁻¹d ≤ r² = 2 ln(255 o)``: a quadratic in the row's ``dx``. Listing the
    box's every pixel instead would list about 2.5 pairs for each one kept."""
    extent = 3 * torch.sqrt(torch.stack([cov2d[:, 0, 0], cov2d[:, 1, 1]], -1))  # the 3σ ellipse's half box (x, y)
    low = torch.floor(mean2d - extent - 0.5).clamp(min=0).long()  # pixels whose centre (i + 0.5) may be inside
    high = torch.minimum(torch.ceil(mean2d + extent - 0.5).long(), torch.tensor([width - 1, height - 1], device=mean2d.device))
    gaussian, y = integer_runs(low[:, 1], (high[:, 1] - low[:, 1] + 1).clamp(min=0) * visible)
    xx, xy, yy = conic.index_select(0, gaussian).T
    dy = y.to(conic) + 0.5 - mean2d[:, 1].index_select(0, gaussian)
    radius2 = 2 * torch.log(255 * opacities.index_select(0, gaussian))
    half = torch.sqrt((xy ** 2 * dy ** 2 - xx * (yy * dy ** 2 - radius2)).clamp(min=0)) / xx + 1e-3  # rounding's margin
    centre = mean2d[:, 0].index_select(0, gaussian) - xy * dy / xx - 0.5  # of the row's run, as a pixel index
    first = torch.maximum(torch.ceil(centre - half).long(), low[:, 0].index_select(0, gaussian))
    last = torch.minimum(torch.floor(centre + half).long(), high[:, 0].index_select(0, gaussian))
    row, x = integer_runs(first, (last - first + 1).clamp(min=0))
    pixel, gaussian = y.index_select(0, row) * width + x, gaussian.index_select(0, row)
    kept = torch.nonzero(_alphas(pixel, gaussian, mean2d, conic, opacities, width) >= ALPHA_MIN)[:, 0]  # exactly
    kept = kept.index_select(0, torch.sort(pixel.index_select(0, kept).int(), stable=True).indices)  # stable: depth order
    return pixel.index_select(0, kept), gaussian.index_select(0, kept)


def _alphas(pixel: torch.Tensor, gaussian: torch.Tensor, mean2d: torch.Tensor, conic: torch.Tensor,
            opacities: torch.Tensor, width: int) -> torch.Tensor:
    """Each pair's ``α = min(0.99, o exp(-½ dᵀΣ'⁻¹d)) [M]``, ``d`` from the splat's centre to the pixel's."""
    splat = torch.cat([mean2d, conic, opacities[:, None]], 1).index_select(0, gaussian).T  # one gather, [6,M]
    d = torch.stack([pixel % width, pixel // width]).to(mean2d) + 0.5 - splat[:2]
    power = -0.5 * (splat[2] * d[0] ** 2 + splat[4] * d[1] ** 2) - splat[3] * d[0] * d[1]
    return (splat[5] * torch.exp(power.clamp(max=0))).clamp(max=ALPHA_MAX)


def composite(mean2d: torch.Tensor, cov2d: torch.Tensor, depth: torch.Tensor, opacities: torch.Tensor,
              colors: torch.Tensor, height: int, width: int, background: torch.Tensor) -> dict[str, torch.Tensor]:
    """Front-to-back compositing of projected splats (step 3 of the module docstring), over (pixel, Gaussian) pairs.
    Returns ``rgb [H,W,3]``, ``alpha [H,W]`` and ``depth [H,W]`` (the weights' sum of splat depths; 0 on background)."""
    order = torch.argsort(depth)
    mean2d, cov2d, depth, opacities, colors = mean2d[order], cov2d[order], depth[order], opacities[order], colors[order]
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    conic = torch.stack([c, -b, a], -1) / (a * c - b * b)[:, None]  # Σ'⁻¹ as (xx, xy, yy)
    with torch.no_grad():
        pixel, gaussian = _pairs(mean2d, cov2d, conic, opacities, depth > NEAR, height, width)
        end = torch.cumsum(torch.bincount(pixel, minlength=height * width), 0)  # one past each pixel's last pair
        first = torch.cat([end.new_zeros(1), end[:-1]]).index_select(0, pixel)  # each pair's pixel's first pair
    alpha = _alphas(pixel, gaussian, mean2d, conic, opacities, width)
    # T_k = exp(Σ_{j<k} log(1 - α_j)) within the pixel: a running sum over the whole image, less its value at the
    # pixel's first pair. In float64, since each pixel's share is a small difference of large numbers.
    through = torch.nn.functional.pad(torch.cumsum(torch.log1p(-alpha).double(), 0), (1, 0))
    transmittance = torch.exp(through[:-1] - through.index_select(0, first)).to(alpha)
    weight = alpha * transmittance * (transmittance > TRANSMITTANCE_MIN)  # stopped once nothing gets through
    values = torch.cat([colors, depth[:, None], torch.ones_like(depth)[:, None]], 1).index_select(0, gaussian)
    summed = torch.zeros(height * width, 5, dtype=values.dtype, device=values.device).index_add(0, pixel, weight[:, None] * values)
    rgb, z, opacity = summed.split([3, 1, 1], 1)
    rgb = rgb + (1 - opacity) * background
    return {"rgb": rgb.reshape(height, width, 3), "alpha": opacity.reshape(height, width),
            "depth": z.reshape(height, width)}


def gsplat_camera(c2w: torch.Tensor, height: int, width: int, focal: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The course's camera ``c2w [4,4]`` in gsplat's terms: ``viewmat [4,4]``, world to camera in OpenCV axes (x right,
    y down, looking down +z), and the pinhole ``K [3,3]`` with the principal point at the image's centre. Both put
    pixel centres at +0.5, so a point lands on the same pixel as in ``project_gaussians``."""
    opencv = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=c2w.dtype, device=c2w.device))  # y and z flipped
    intrinsics = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]], dtype=c2w.dtype,
                              device=c2w.device)
    return opencv @ torch.linalg.inv(c2w), intrinsics


def gsplat_rasterization():
    """gsplat's ``rasterization``, or an ImportError that says what ``backend="gsplat"`` needs."""
    try:
        from gsplat import rasterization
    except ImportError as error:
        raise ImportError("backend='gsplat': needs the gsplat package on a CUDA machine (pip install gsplat); "
                          "backend='torch' runs anywhere") from error
    return rasterization


def _require_cuda(means: torch.Tensor) -> None:
    if means.device.type != "cuda":
        raise ValueError(f"backend='gsplat': expected the Gaussians on a CUDA device (gsplat has no CPU path), got "
                         f"{means.device}; backend='torch' runs anywhere")


def rasterize_gsplat(means, scales, rotations, opacities, colors, c2w, height, width, focal, background
                     ) -> dict[str, torch.Tensor]:
    """The Gaussians (as ``render_gaussians`` takes them) through gsplat's CUDA rasterizer: ``rgb [H,W,3]`` on
    ``background [3]``, ``alpha [H,W]``, ``depth [H,W]`` (the weights' sum of depths, as here) and gsplat's
    image-space means ``mean2d [1,N,2]`` (pixels), whose gradient densification reads."""
    rasterization = gsplat_rasterization()
    _require_cuda(means)
    viewmat, intrinsics = gsplat_camera(c2w, height, width, focal)
    rendered, alpha, meta = rasterization(means, rotations, scales, opacities, colors, viewmat[None], intrinsics[None],
                                          width, height, near_plane=NEAR, eps2d=DILATION, packed=False,
                                          render_mode="RGB+D")
    alpha = alpha[0, ..., 0]
    return {"rgb": rendered[0, ..., :3] + (1 - alpha)[..., None] * background, "alpha": alpha,
            "depth": rendered[0, ..., 3], "mean2d": meta["means2d"]}


def check_gaussians(means, scales, rotations, opacities, colors) -> None:
    """Named errors for Gaussians of the wrong shape, non-finite values, non-unit quaternions, or values out of range."""
    sizes: dict[str, int] = {}
    check_tensor("means", means, shape=["N", 3], sizes=sizes, floating=True)
    check_tensor("scales", scales, shape=["N", 3], sizes=sizes, floating=True)
    check_tensor("rotations", rotations, shape=["N", 4], sizes=sizes, floating=True)
    check_tensor("opacities", opacities, shape=["N"], sizes=sizes, floating=True)
    check_tensor("colors", colors, shape=["N", 3], sizes=sizes, floating=True)
    norms = rotations.detach().norm(dim=-1)
    if ((norms - 1).abs() > 1e-3).any():
        worst = norms[(norms - 1).abs().argmax()].item()
        raise ValueError(f"rotations: expected unit quaternions (w, x, y, z), got a norm of {worst:.4g} "
                         f"(normalise them, e.g. torch.nn.functional.normalize(q, dim=-1))")
    if (scales.detach() <= 0).any():
        raise ValueError(f"scales: expected positive standard deviations, got a minimum of {scales.min().item():.4g}")
    if ((opacities.detach() < 0) | (opacities.detach() > 1)).any():
        raise ValueError(f"opacities: expected values in [0, 1], got [{opacities.min().item():.4g}, "
                         f"{opacities.max().item():.4g}]")


def render_gaussians(means: torch.Tensor, scales: torch.Tensor, rotations: torch.Tensor, opacities: torch.Tensor,
                     colors: torch.Tensor, c2w: torch.Tensor, height: int, width: int, focal: float,
                     background=(1.0, 1.0, 1.0), backend: str = "torch") -> dict[str, torch.Tensor]:
    """Splat N Gaussians into an image from camera ``c2w [4,4]`` (see the module docstring).

    ``means [N,3]``, ``scales [N,3]`` (standard deviations, world units), ``rotations [N,4]`` (unit quaternions,
    w first), ``opacities [N]`` in [0,1], ``colors [N,3]``; ``focal`` in pixels. Returns ``rgb [H,W,3]`` (on
    ``background``), ``alpha [H,W]`` and ``depth [H,W]``, differentiable in every Gaussian parameter.
    ``backend="gsplat"`` rasterizes with gsplat instead (CUDA only; see the module docstring).
    """
    check_gaussians(means, scales, rotations, opacities, colors)
    c2w = check_tensor("c2w", c2w, shape=[4, 4], floating=True).to(means)
    height, width = check_positive_int("height", height), check_positive_int("width", width)
    focal = check_positive("focal", focal)
    background = check_tensor("background", torch.as_tensor(background, dtype=means.dtype), shape=[3]).to(means.device)
    check_choice("backend", backend, BACKENDS)
    if backend == "gsplat":
        out = rasterize_gsplat(means, scales, rotations, opacities, colors, c2w, height, width, focal, background)
        return {key: out[key] for key in ("rgb", "alpha", "depth")}
    projected = project_gaussians(means, covariance_3d(scales, rotations), c2w, height, width, focal)
    return composite(projected["mean2d"], projected["cov2d"], projected["depth"], opacities, colors, height, width,
                     background)


__all__ = ["BACKENDS", "check_gaussians", "composite", "covariance_3d", "gsplat_camera", "gsplat_rasterization",
           "integer_runs",
           "project_gaussians", "quaternion_to_rotation", "rasterize_gsplat", "render_gaussians"]
