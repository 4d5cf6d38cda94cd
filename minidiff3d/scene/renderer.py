"""Volume rendering of a bounded density field from posed cameras, with shading and a background.

It is chapter 01's quadrature (``minidiff3d.render.volume_render``), with three changes a
text-to-3D loop needs: samples are spread only over each ray's chord through the scene's
bounding sphere (rays that miss it cost nothing); a final zero-density sample closes each
chord, so no density is ever stretched over an infinite last interval; and colours are shaded
(``shading.shade``) before compositing, over a background that sees the ray direction.
"""

from __future__ import annotations

import torch
from torch import nn

from ..cameras import check_c2w, get_rays
from ..render import stratified_samples, volume_render
from ..validation import check_fraction, check_positive, check_positive_int, check_tensor
from .shading import AMBIENT, shade

WEIGHT_EPS = 1e-4  # samples weighted less than this contribute nothing visible: no normals for them


def sphere_chords(origins: torch.Tensor, directions: torch.Tensor, radius: float) -> tuple[torch.Tensor, ...]:
    """Entry and exit distances ``[R]`` of unit rays through a sphere at the origin, and which rays ``[R]`` hit it."""
    along = -(origins * directions).sum(-1)  # distance to the point of closest approach
    closest_sq = (origins + along[:, None] * directions).pow(2).sum(-1)
    half = (radius**2 - closest_sq).clamp(min=0).sqrt()
    return (along - half).clamp(min=0), along + half, closest_sq < radius**2


class VolumeRenderer(nn.Module):
    """Render ``geometry`` (a ``DensityField``) through cameras ``c2w [B,4,4]`` into ``[B,C,H,W]`` maps.

    Args:
        n_samples: stratified samples per ray chord.
        radius: the bounding sphere (√3 covers the [-1,1]^3 box; 1 is enough for the toy world).
        ambient: the shaded modes' ambient light (``shading.shade``).
    """

    def __init__(self, geometry: nn.Module, background: nn.Module, n_samples: int = 48, radius: float = 1.0,
                 ambient: float = AMBIENT):
        super().__init__()
        self.geometry, self.background = geometry, background
        self.n_samples, self.radius = check_positive_int("n_samples", n_samples), check_positive("radius", radius)
        self.ambient = check_fraction("ambient", ambient)

    def forward(self, c2w: torch.Tensor, size: int, focal: float, shading: str = "albedo",
                light_dirs: torch.Tensor | None = None, perturb: bool = True,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Returns ``rgb [B,3,H,W]`` in [0,1], ``opacity [B,1,H,W]``, ``depth [B,1,H,W]``, and for shaded
        modes ``normal [B,3,H,W]`` (opacity-weighted) and ``orientation`` (DreamFusion's penalty on
        normals that face away from the camera, a scalar). ``perturb`` jitters the samples with ``generator``."""
        c2w = check_c2w("c2w", c2w)
        if c2w.ndim != 3:
            raise ValueError(f"c2w: expected a batch [B,4,4], got {list(c2w.shape)}")
        if shading != "albedo":
            check_tensor("light_dirs", light_dirs, shape=[len(c2w), 3])
        batch, device = len(c2w), c2w.device
        origins, directions = (x.reshape(-1, 3) for x in get_rays(c2w, size, size, focal))
        pixels_per_view = size * size
        near, far, hit = sphere_chords(origins, directions, self.radius)
        rgb = torch.zeros(len(origins), 3, device=device)
        opacity, depth = torch.zeros(len(origins), device=device), torch.zeros(len(origins), device=device)
        normal_map = torch.zeros(len(origins), 3, device=device)
        orientation = torch.zeros((), device=device)
        if hit.any():
            o, d, t0, t1 = origins[hit], directions[hit], near[hit], far[hit]
            u = stratified_samples(0.0, 1.0, self.n_samples, (len(o),), perturb, generator).to(device)
            z = torch.cat([t0[:, None] + (t1 - t0)[:, None] * u, t1[:, None]], -1)  # [R,S+1], the last closes the chord
            points = (o[:, None] + z[..., :-1, None] * d[:, None]).reshape(-1, 3)
            density, albedo = self.geometry(points)
            sigma = torch.cat([density.reshape(len(o), -1), torch.zeros(len(o), 1, device=device)], -1)
            normals = lights = None
            if shading != "albedo":
                # Normals cost three more density evaluations each; only samples that the
                # composite weighs at all need them (a few per ray, near the surface).
                with torch.no_grad():
                    weights = volume_render(sigma, torch.zeros(*sigma.shape, 3, device=device), z)["weights"]
                needed = weights[:, :-1].reshape(-1) > WEIGHT_EPS
                normals = torch.zeros_like(points).index_put((needed,), self.geometry.normals(points[needed], density[needed]))
                view = torch.arange(batch, device=device).repeat_interleave(pixels_per_view)[hit]
                lights = light_dirs[view].repeat_interleave(self.n_samples, 0)
            colors = shade(albedo, normals, lights, shading, self.ambient)
            colors = torch.cat([colors.reshape(len(o), -1, 3), torch.zeros(len(o), 1, 3, device=device)], 1)
            out = volume_render(sigma, colors, z)
            rgb, opacity, depth = rgb.index_put((hit,), out["rgb"]), opacity.index_put((hit,), out["opacity"]), \
                depth.index_put((hit,), out["depth"])
            if normals is not None:
                weights = out["weights"][:, :-1]
                normals = normals.reshape(len(o), -1, 3)
                normal_map = normal_map.index_put((hit,), (weights[..., None] * normals).sum(1))
                facing = (normals * d[:, None]).sum(-1).clamp(min=0)  # > 0: the normal points away from the viewer
                orientation = (weights.detach() * facing.pow(2)).sum(-1).sum() / len(origins)
        rgb = rgb + (1 - opacity[:, None]) * self.background(directions)

        def image(x: torch.Tensor) -> torch.Tensor:  # [B*H*W, C] -> [B, C, H, W]
            return x.reshape(batch, size, size, -1).permute(0, 3, 1, 2)

        result = {"rgb": image(rgb), "opacity": image(opacity[:, None]), "depth": image(depth[:, None])}
        if shading != "albedo":
            result.update(normal=image(normal_map), orientation=orientation)
        return result
