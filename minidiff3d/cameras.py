"""Camera conventions, in one place for the whole course.

* World: right-handed and z-up.
* Camera-to-world matrices ``c2w [4,4]`` follow OpenGL/Blender: the camera looks down its
  own -z axis, +x points right and +y up in the image. Columns 0-2 are the camera axes in
  world coordinates and column 3 is the camera centre.
* Orbit cameras sit at (elevation, azimuth, radius) around a target. Azimuth 0 is on the +x
  axis, which is the *front* of every toy-world object; azimuth grows counter-clockwise seen
  from above (towards +y). Elevation 90 looks straight down.
* Pixels: row ``i`` counts downwards, column ``j`` to the right, and a ray goes through the
  pixel's centre ``(j + 0.5, i + 0.5)``. ``focal`` is in pixels, the same for x and y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .validation import check_broadcast, check_positive, check_positive_int, check_tensor


def _as_angles(name: str, value) -> torch.Tensor:
    angles = torch.as_tensor(value, dtype=torch.float32)
    if angles.ndim > 1:
        raise ValueError(f"{name}: expected a number or a 1-D sequence of degrees, got shape {list(angles.shape)}")
    return check_tensor(name, angles)


def orbit_camera(elevation_deg, azimuth_deg, radius=2.8, target=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """Camera-to-world matrix of a camera on a sphere around ``target``, looking at it.

    Angles are in degrees; numbers give ``[4,4]``, 1-D sequences of length B give ``[B,4,4]``.
    The camera's right axis is the direction of growing azimuth, so the basis stays well
    defined straight above and below the target, where a look-at with a z-up vector breaks.
    """
    elevation = torch.deg2rad(_as_angles("elevation_deg", elevation_deg))
    azimuth = torch.deg2rad(_as_angles("azimuth_deg", azimuth_deg))
    radius_t = _as_angles("radius", radius)
    if (radius_t <= 0).any():
        raise ValueError(f"radius: expected positive values, got {radius!r}")
    target_t = check_tensor("target", torch.as_tensor(target, dtype=torch.float32), shape=[3])
    elevation, azimuth, radius_t = check_broadcast(elevation_deg=elevation, azimuth_deg=azimuth, radius=radius_t)

    backward = torch.stack(  # camera +z, pointing from the target to the camera
        [torch.cos(elevation) * torch.cos(azimuth), torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation)], -1
    )
    right = torch.stack([-torch.sin(azimuth), torch.cos(azimuth), torch.zeros_like(azimuth)], -1)
    up = torch.linalg.cross(backward, right)
    c2w = torch.zeros(*elevation.shape, 4, 4)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2] = right, up, backward
    c2w[..., :3, 3] = target_t + radius_t[..., None] * backward
    c2w[..., 3, 3] = 1.0
    return c2w


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """Camera-to-world ``[4,4]`` of a camera at ``eye`` looking at ``target`` with ``up`` roughly up."""
    eye_t = check_tensor("eye", torch.as_tensor(eye, dtype=torch.float32), shape=[3])
    target_t = check_tensor("target", torch.as_tensor(target, dtype=torch.float32), shape=[3])
    up_t = check_tensor("up", torch.as_tensor(up, dtype=torch.float32), shape=[3])
    forward = target_t - eye_t
    if forward.norm() < 1e-8:
        raise ValueError(f"eye and target: expected distinct points, got both at {eye_t.tolist()}")
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up_t)
    if right.norm() < 1e-6:
        raise ValueError(f"up: expected a vector not parallel to the viewing direction {forward.tolist()}, got {up_t.tolist()}")
    right = right / right.norm()
    c2w = torch.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, torch.linalg.cross(right, forward), -forward, eye_t
    return c2w


def focal_from_fov(fov_deg: float, width: int) -> float:
    """Focal length in pixels for a horizontal field of view (Blender's ``camera_angle_x``)."""
    fov = check_positive("fov_deg", fov_deg)
    if fov >= 180:
        raise ValueError(f"fov_deg: expected a field of view below 180 degrees, got {fov_deg!r}")
    return 0.5 * check_positive_int("width", width) / math.tan(math.radians(fov) / 2)


def intrinsics(focal: float, height: int, width: int) -> torch.Tensor:
    """Pinhole intrinsics ``K [3,3]`` with the principal point at the image centre."""
    focal = check_positive("focal", focal)
    height, width = check_positive_int("height", height), check_positive_int("width", width)
    return torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def intrinsics_from_fov(fov_deg: float, height: int, width: int) -> torch.Tensor:
    """``K [3,3]`` for a horizontal field of view in degrees."""
    return intrinsics(focal_from_fov(fov_deg, width), height, width)


def check_c2w(name: str, c2w) -> torch.Tensor:
    """Check a camera-to-world matrix ``[...,4,4]`` and return it as float32."""
    return check_tensor(name, c2w, shape=["...", 4, 4]).float()


def get_rays(c2w: torch.Tensor, height: int, width: int, focal: float, normalize: bool = True):
    """One ray per pixel centre.

    Args:
        c2w: camera-to-world ``[4,4]`` or batched ``[...,4,4]``.
        normalize: unit directions (the default), so that a ray's ``t`` is a distance in
            world units. With ``False`` a direction has camera-space z = -1 as in the original
            NeRF code; its ``t`` is then depth along the optical axis, and a renderer must
            scale its sample spacings by the direction's norm.

    Returns:
        ``(origins, directions)``, each ``[...,H,W,3]`` in world coordinates.
    """
    c2w = check_c2w("c2w", c2w)
    height, width = check_positive_int("height", height), check_positive_int("width", width)
    focal = check_positive("focal", focal)
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    camera_dirs = torch.stack(
        [(cols + 0.5 - width / 2) / focal, -(rows + 0.5 - height / 2) / focal, -torch.ones_like(rows)], -1
    ).to(c2w.device)
    rotation = c2w[..., None, None, :3, :3]  # [...,1,1,3,3] broadcasts over pixels
    directions = (rotation @ camera_dirs[..., None])[..., 0]
    if normalize:
        directions = directions / directions.norm(dim=-1, keepdim=True)
    origins = c2w[..., None, None, :3, 3].expand_as(directions)
    return origins, directions


def project_points(points: torch.Tensor, c2w: torch.Tensor, height: int, width: int, focal: float):
    """Project world points ``[N,3]`` into an image: pixel coordinates ``[N,2]`` as (x, y) and depth ``[N]``.

    Pixel (x, y) = (column, row) with the pixel's centre at +0.5; depth is the distance
    in front of the camera along its optical axis (negative behind it).
    """
    points = check_tensor("points", points, shape=["N", 3]).float()
    c2w = check_tensor("c2w", c2w, shape=[4, 4]).float()
    height, width = check_positive_int("height", height), check_positive_int("width", width)
    focal = check_positive("focal", focal)
    camera = (points - c2w[:3, 3]) @ c2w[:3, :3]  # world -> camera, R^T (p - t)
    depth = -camera[:, 2]
    pixels = torch.stack([width / 2 + focal * camera[:, 0] / depth, height / 2 - focal * camera[:, 1] / depth], -1)
    return pixels, depth


def frustum_corners(c2w: torch.Tensor, height: int, width: int, focal: float, depth: float = 0.5) -> torch.Tensor:
    """The four image-corner points ``[4,3]`` of a camera's frustum at ``depth``, for drawing."""
    c2w = check_tensor("c2w", c2w, shape=[4, 4]).float()
    corners = torch.tensor(
        [[-width / 2, height / 2], [width / 2, height / 2], [width / 2, -height / 2], [-width / 2, -height / 2]]
    ) / check_positive("focal", focal)
    camera = torch.cat([corners, -torch.ones(4, 1)], -1) * check_positive("depth", depth)
    return camera @ c2w[:3, :3].T + c2w[:3, 3]


@dataclass
class Cameras:
    """A batch of orbit cameras, as systems and guidance pass them around.

    ``c2w [B,4,4]``; their ``elevation`` and ``azimuth`` ``[B]`` in degrees (what view-dependent
    prompts and relative-camera conditions read), on a sphere of ``radius``, with a horizontal
    field of view ``fov_deg``.
    """

    c2w: torch.Tensor
    elevation: torch.Tensor
    azimuth: torch.Tensor
    radius: float
    fov_deg: float

    @classmethod
    def orbit(cls, elevation, azimuth, radius: float = 2.8, fov_deg: float = 40.0, device=None) -> "Cameras":
        """Cameras at ``elevation, azimuth`` (degrees; numbers or ``[B]``) looking at the origin."""
        elevation = _as_angles("elevation", elevation).reshape(-1)
        azimuth = _as_angles("azimuth", azimuth).reshape(-1)
        elevation, azimuth = check_broadcast(elevation=elevation, azimuth=azimuth)
        focal_from_fov(fov_deg, 1)  # checks the field of view
        c2w = orbit_camera(elevation, azimuth, radius).reshape(-1, 4, 4)
        return cls(c2w.to(device) if device is not None else c2w, elevation, azimuth, check_positive("radius", radius),
                   float(fov_deg))

    def __len__(self) -> int:
        return len(self.c2w)

    def focal(self, size: int) -> float:
        """Focal length in pixels for square renders of ``size`` pixels."""
        return focal_from_fov(self.fov_deg, size)

    def __getitem__(self, index) -> "Cameras":
        """A sub-batch (``index``: an int, a slice or an index tensor), still batched."""
        index = [index] if isinstance(index, int) else index
        return Cameras(self.c2w[index], self.elevation[index], self.azimuth[index], self.radius, self.fov_deg)
