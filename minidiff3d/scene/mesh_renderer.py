"""The rasterizing renderer: a mesh geometry (``mesh()`` and a colour field) through ``minidiff3d.raster``.

It has the ray marcher's ``render`` call and returns the same maps, so a system swaps one for the other.
Per view: project, rasterize, interpolate surface points and vertex normals, read the albedo at the
points, shade, composite over the background, and antialias the silhouettes so that they carry gradients
to the vertices. It also returns the mesh regularisers that Magic3D's fine stage adds (``deform.py``'s):
the uniform Laplacian and normal consistency of the mesh it rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import raster
from ..cameras import check_c2w, get_rays
from ..deform import mesh_connectivity, normal_consistency, uniform_laplacian
from ..shading import AMBIENT, SHADINGS, shade
from ..validation import check_choice, check_tensor


@dataclass
class MeshRendererConfig:
    """Nothing to set yet: the rasterizer has no samples to count. Here so the renderer is a part like the others."""

    def build(self) -> "MeshRenderer":
        return MeshRenderer()


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit normals ``[V,3]``: the area-weighted mean of the normals of the faces around each vertex."""
    a, b, c = vertices[faces].unbind(1)
    weighted = torch.linalg.cross(b - a, c - a)  # |n| is twice the area
    summed = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), weighted.repeat_interleave(3, 0))
    return F.normalize(summed, dim=-1)


@torch.no_grad()
def render_vertex_colors(vertices: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor, c2w: torch.Tensor, height: int,
                         width: int, focal: float, background: float = 1.0) -> torch.Tensor:
    """``[B,3,H,W]``: a mesh as a viewer shows its vertex colours ``[V,3]`` in [0,1], unlit and interpolated across
    each triangle, over a grey ``background``. What an exported GLB looks like, to compare with the field's colours."""
    colors = check_tensor("colors", colors, shape=[len(vertices), 3], floating=True)
    clip = raster.project(vertices, check_c2w("c2w", c2w), height, width, focal)
    out = raster.rasterize(clip, faces, height, width)
    covered = (out["triangle_id"] >= 0)[..., None]
    image = torch.where(covered, raster.interpolate(colors, out, faces), torch.full_like(colors[0], background))
    return raster.antialias(image, out, clip, faces).clamp(0, 1).permute(0, 3, 1, 2)  # clamped as MeshRenderer's


class MeshRenderer:
    """``render(geometry, c2w [B,4,4], height, width, focal, background, shading, light_dirs [B,3], ...)`` ->
    maps ``[B,C,H,W]``: ``rgb``, ``opacity``, ``depth`` (distance along the unit ray, as the marcher's), and for
    shaded modes ``normal``; and the scalars ``laplacian`` and ``normal_consistency``."""

    def render(self, geometry, c2w: torch.Tensor, height: int, width: int, focal: float, background=None,
               shading: str = "albedo", light_dirs: torch.Tensor | None = None, ambient: float = AMBIENT,
               perturb: bool = False, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        c2w = check_c2w("c2w", c2w)
        check_choice("shading", shading, SHADINGS)
        batch = len(c2w)
        if shading != "albedo":
            light_dirs = check_tensor("light_dirs", light_dirs, shape=[batch, 3], floating=True)
        vertices, faces = geometry.mesh()
        origins, directions = get_rays(c2w, height, width, focal, normalize=False)  # [B,H,W,3], camera z = -1
        unit = F.normalize(directions, dim=-1)
        backdrop = background(unit) if background is not None else torch.zeros_like(unit)
        if len(faces) == 0:  # nothing to see: the background, and no regularisers to add
            zeros = unit.new_zeros(batch, 1, height, width)
            return {"rgb": backdrop.permute(0, 3, 1, 2), "opacity": zeros, "depth": zeros}
        clip = raster.project(vertices, c2w, height, width, focal)
        out = raster.rasterize(clip, faces, height, width)
        covered = out["triangle_id"] >= 0  # [B,H,W]
        points = raster.interpolate(vertices, out, faces)[covered]  # [N,3]
        albedo = geometry(points)["rgb"]
        maps = {}
        if shading != "albedo":
            normals = F.normalize(raster.interpolate(vertex_normals(vertices, faces), out, faces)[covered], dim=-1)
            lights = light_dirs[:, None, None].expand(batch, height, width, 3)[covered]
            albedo = shade(albedo, normals, lights, shading, ambient)
            maps["normal"] = unit.new_zeros(batch, height, width, 3).index_put(covered.nonzero(as_tuple=True), normals)
        colour = backdrop.index_put(covered.nonzero(as_tuple=True), albedo)
        image = torch.cat([colour, covered[..., None].to(colour)], -1)
        # rgb and opacity blended across silhouettes. A pixel with silhouettes on two sides takes a share from
        # each, and the shares (each up to 1/2, as nvdiffrast's) can sum past a convex blend: clamp to [0,1].
        image = raster.antialias(image, out, clip, faces).clamp(0, 1)
        maps.update(rgb=image[..., :3], opacity=image[..., 3:], depth=(out["depth"] * directions.norm(dim=-1))[..., None])
        maps = {key: value.permute(0, 3, 1, 2) for key, value in maps.items()}
        edges, face_pairs = mesh_connectivity(faces, len(vertices))
        maps["laplacian"] = uniform_laplacian(vertices, edges).square().sum(-1).mean()
        maps["normal_consistency"] = normal_consistency(vertices, faces, face_pairs)
        return maps


__all__ = ["MeshRenderer", "MeshRendererConfig", "render_vertex_colors", "vertex_normals"]
