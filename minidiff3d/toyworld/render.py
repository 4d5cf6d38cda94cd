"""Sphere tracing of toy-world objects: the course's ground-truth camera.

A ray steps forward by the SDF's value, which is the radius of a ball that cannot contain
the surface; it stops when that radius falls below ``eps``. Shading is Lambertian under one
light fixed in the *world* (so every view of a scene agrees, as NeRF assumes) plus ambient.
"""

from __future__ import annotations

import torch

from ..cameras import check_c2w, focal_from_fov, get_rays
from ..shading import AMBIENT, LIGHT_DIR
from ..validation import check_positive_int
from .objects import ToyObject

DEFAULT_FOV_DEG = 40.0
DEFAULT_RADIUS = 2.8  # anything within 0.95 of the origin stays in frame at the default field of view
# The toy priors' training cameras, and so the cameras their text-to-3D runs sample: low enough to see a
# side, high enough that a fifth of the views are overhead (past captions.OVERHEAD_ELEVATION).
ELEVATION_RANGE = (-10.0, 80.0)
BOUND = 1.0  # every object lies inside the ball of this radius


def trace(obj: ToyObject, origins: torch.Tensor, directions: torch.Tensor, max_steps: int = 96, eps: float = 1e-3):
    """Sphere-trace rays ``[R,3]`` (unit directions). Returns ``(hit [R] bool, t [R])``."""
    # Only the stretch of a ray inside the bounding ball can meet the object.
    b = (origins * directions).sum(-1)
    disc = b**2 - (origins.square().sum(-1) - BOUND**2)
    root = disc.clamp(min=0).sqrt()
    t, t_exit = (-b - root).clamp(min=0), -b + root
    active = disc > 0
    hit = torch.zeros_like(active)
    for _ in range(max_steps):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        distance = obj.sdf(origins[idx] + t[idx, None] * directions[idx])
        t[idx] += distance
        converged = distance < eps
        hit[idx] = converged
        active[idx] = ~converged & (t[idx] < t_exit[idx])
    return hit, t


def render(
    obj: ToyObject,
    c2w: torch.Tensor,
    height: int = 64,
    width: int = 64,
    fov_deg: float = DEFAULT_FOV_DEG,
    background=(1.0, 1.0, 1.0),
    antialias: int = 1,
) -> dict[str, torch.Tensor]:
    """Render ``obj`` from a camera-to-world ``c2w [4,4]``.

    ``antialias=k`` traces k x k rays per pixel and averages them, which softens edges
    (alpha becomes fractional) at k^2 times the cost.

    Returns a dict with ``image [H,W,3]`` in [0,1] (composited on ``background``),
    ``alpha [H,W]``, ``depth [H,W]`` (distance along the ray; 0 where nothing is hit) and
    ``normals [H,W,3]`` (unit world-space normals; 0 where nothing is hit).
    """
    c2w = check_c2w("c2w", c2w)
    if c2w.shape != (4, 4):
        raise ValueError(f"c2w: expected shape [4,4] (render one view at a time), got {list(c2w.shape)}")
    height, width = check_positive_int("height", height), check_positive_int("width", width)
    k = check_positive_int("antialias", antialias)
    rays_h, rays_w = height * k, width * k
    origins, directions = get_rays(c2w, rays_h, rays_w, focal_from_fov(fov_deg, rays_w))
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    hit, t = trace(obj, origins, directions)

    points = origins[hit] + t[hit, None] * directions[hit]
    normals = torch.zeros_like(origins)
    normals[hit] = obj.normals(points)
    light = torch.tensor(LIGHT_DIR) / torch.tensor(LIGHT_DIR).norm()
    shade = AMBIENT + (1 - AMBIENT) * (normals[hit] @ light).clamp(min=0)
    colour = torch.zeros_like(origins)
    colour[hit] = obj.albedo(points) * shade[:, None]
    alpha = hit.float()
    depth = torch.where(hit, t, torch.zeros_like(t))

    def pool(x: torch.Tensor) -> torch.Tensor:  # [rays_h*rays_w, C] -> [H, W, C], averaging k x k blocks
        x = x.reshape(height, k, width, k, -1)
        return x.mean(dim=(1, 3))

    alpha_px = pool(alpha[:, None])[..., 0]
    colour_px = pool(colour)
    # Average depth and normals over the hit sub-rays only, so that edges are not pulled towards 0.
    coverage = alpha_px.clamp(min=1e-8)[..., None]
    depth_px = pool(depth[:, None]) / coverage
    normals_px = pool(normals)
    normals_px = normals_px / normals_px.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    bg = torch.as_tensor(background, dtype=torch.float32)
    image = colour_px + (1 - alpha_px[..., None]) * bg
    return {"image": image.clamp(0, 1), "alpha": alpha_px, "depth": depth_px[..., 0], "normals": normals_px}
