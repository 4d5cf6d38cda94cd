"""The course's one ray marcher: from a field and rays to pixels, for NeRF fitting and text-to-3D alike.

Chapter 01's quadrature (``render.volume_render``) plus what a real renderer adds around it:

* **where to sample**: between fixed ``near`` and ``far`` (NeRF's posed photographs, the last
  interval open to infinity), or only on each ray's chord through a bounding sphere of ``radius``
  (text-to-3D: rays that miss it cost nothing, and a final zero-density sample closes each chord,
  so no density is ever stretched over an infinite last interval);
* **hierarchical samples**: ``n_fine`` more, drawn from the first pass's weights;
* **empty-space skipping**: with an ``OccupancyGrid``, only samples in occupied cells reach the field;
* **shading**: albedo, lambertian or textureless (``shading.shade``), with normals by finite
  differences of the density, for the samples that the composite weighs at all;
* **background**: a module of the ray direction, seen through ``1 - opacity``.

Every field follows the contract of ``minidiff3d.fields``: ``field(points, directions)`` returns
``{"density", "rgb"}`` and ``field.density(points)`` the density alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .cameras import check_c2w, get_rays
from .render import sample_pdf, stratified_samples, volume_render
from .shading import AMBIENT, SHADINGS, shade
from .validation import check_choice, check_fraction, check_non_negative_int, check_positive, check_positive_int, check_tensor

WEIGHT_EPS = 1e-4  # samples weighted less than this contribute nothing visible: no normals for them


class OccupancyGrid(nn.Module):
    """A ``R^3`` grid over ``[-bound, bound]^3`` of which cells may hold density (Instant-NGP's density grid).

    ``update`` keeps a decaying max of the field's density at a random point per cell. A cell is
    occupied when that density is above ``min(threshold, mean density)`` (Instant-NGP's rule: a
    faint scene whose densities all sit below the threshold keeps its denser half). Points outside the
    box count as empty, which is right for a bounded scene such as the toy world's.

    Instant-NGP decays by 0.95 per update; it takes thousands of steps a second, a CPU takes
    tens, so the memory is shorter here (0.8 per update; ``fit_nerf`` updates every 4 steps for the
    first 128 steps, then every 16), or the fog of the initial field would be traced for hundreds of steps.
    """

    def __init__(self, resolution: int = 32, bound: float = 1.0, threshold: float = 0.05, decay: float = 0.8):
        super().__init__()
        self.resolution, self.bound = check_positive_int("resolution", resolution), check_positive("bound", bound)
        self.threshold, self.decay = threshold, check_fraction("decay", decay)
        self.register_buffer("density", torch.zeros((resolution,) * 3))  # filled by the first update

    @property
    def occupied(self) -> torch.Tensor:
        return self.density > min(self.threshold, self.density.mean().item())

    def query(self, points: torch.Tensor) -> torch.Tensor:
        """Occupancy ``[...]`` (bool) of points ``[...,3]``."""
        cell = ((points / self.bound + 1) / 2 * self.resolution).floor().long()
        inside = ((cell >= 0) & (cell < self.resolution)).all(-1)
        cell = cell.clamp(0, self.resolution - 1)
        return inside & self.occupied[cell[..., 0], cell[..., 1], cell[..., 2]]

    @torch.no_grad()
    def update(self, density_fn, generator: torch.Generator | None = None) -> None:
        """Fold ``density_fn(points [N,3]) -> [N]`` at one random point per cell into the grid."""
        r = self.resolution
        idx = torch.stack(torch.meshgrid(*[torch.arange(r, device=self.density.device)] * 3, indexing="ij"), -1).reshape(-1, 3)
        jitter = torch.rand(idx.shape, generator=generator).to(idx.device)
        points = ((idx + jitter) / r * 2 - 1) * self.bound
        fresh = torch.cat([density_fn(chunk) for chunk in points.split(65536)]).reshape(r, r, r)
        self.density = torch.maximum(self.density * self.decay, fresh)


def sphere_chords(origins: torch.Tensor, directions: torch.Tensor, radius: float) -> tuple[torch.Tensor, ...]:
    """Entry and exit distances ``[R]`` of unit rays ``[R,3]`` through a sphere at the origin, and which rays ``[R]`` hit it."""
    along = -(origins * directions).sum(-1)  # distance to the point of closest approach
    closest_sq = (origins + along[:, None] * directions).pow(2).sum(-1)
    half = (radius**2 - closest_sq).clamp(min=0).sqrt()
    far = along + half
    return (along - half).clamp(min=0), far, (closest_sq < radius**2) & (far > 0)  # far <= 0: the sphere is behind


def finite_difference_normals(density_fn, points: torch.Tensor, density: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Unit normals ``[N,3]``, ``-∇σ / ‖∇σ‖``, by forward differences of ``density_fn`` (3 extra evaluations).

    ``density [N]`` is ``density_fn(points [N,3])``, already computed. Differences, not autograd's
    double backward: cheaper on a CPU, and the gradient of the shading still reaches the geometry
    through every evaluated density.
    """
    offsets = torch.eye(3, device=points.device) * eps
    shifted = density_fn((points[:, None, :] + offsets).reshape(-1, 3)).reshape(-1, 3)
    return -F.normalize((shifted - density[:, None]) / eps, dim=-1, eps=1e-8)


class SolidBackground(nn.Module):
    """One colour ``[3]`` behind the scene, whatever the direction (white, like every toy-world render)."""

    def __init__(self, color=(1.0, 1.0, 1.0)):
        super().__init__()
        self.register_buffer("color", check_tensor("color", torch.as_tensor(color, dtype=torch.float32), shape=[3]),
                             persistent=False)

    def forward(self, directions: torch.Tensor) -> torch.Tensor:
        """``[...,3]`` directions -> ``[...,3]`` colours."""
        return self.color.to(directions).expand_as(directions)


@dataclass
class MarcherConfig:
    """A ``RayMarcher`` for a bounded scene: samples on each ray's chord through the sphere of ``radius``."""

    n_samples: int = 32  # per ray: about one per finest grid cell (31 across the unit sphere's diameter)
    n_fine: int = 0
    radius: float = 1.0  # the bounding sphere: √3 covers the [-1,1]^3 box; 1 is enough for the toy world

    def __post_init__(self):
        check_positive_int("renderer.n_samples", self.n_samples)
        check_non_negative_int("renderer.n_fine", self.n_fine)
        check_positive("renderer.radius", self.radius)

    def build(self) -> "RayMarcher":
        return RayMarcher(self.n_samples, self.n_fine, radius=self.radius)


class RayMarcher(nn.Module):
    """Volume-render a field along rays: ``marcher(field, origins, directions, ...)`` or ``marcher.render(field, c2w, ...)``.

    Args:
        n_samples: stratified samples per ray (over ``[near, far]``, or over the ray's chord).
        n_fine: hierarchical samples drawn from the stratified pass's weights (0: none).
        near, far: fixed sampling bounds along every ray; or, instead,
        radius: sample each ray's chord through the sphere of this radius at the origin.
        occupancy: an ``OccupancyGrid``; only samples in its occupied cells are sent to the field.
    """

    def __init__(self, n_samples: int = 64, n_fine: int = 0, near: float | None = None, far: float | None = None,
                 radius: float | None = None, occupancy: OccupancyGrid | None = None):
        super().__init__()
        self.n_samples, self.n_fine = check_positive_int("n_samples", n_samples), check_non_negative_int("n_fine", n_fine)
        if (radius is None) == (near is None or far is None) or (near is None) != (far is None):
            raise ValueError(f"near, far, radius: expected near and far, or radius alone, got near={near}, far={far}, "
                             f"radius={radius}")
        if radius is None:
            self.near, self.far = check_positive("near", near), check_positive("far", far)
            if not self.far > self.near:
                raise ValueError(f"near, far: expected near < far, got near={near}, far={far}")
        self.radius = None if radius is None else check_positive("radius", radius)
        self.occupancy = occupancy

    def _depths(self, origins: torch.Tensor, directions: torch.Tensor, perturb: bool, generator) -> tuple:
        """Stratified ``z [R',S]``, the rays ``[R]`` (bool) they belong to (None: all), and whether z ends in a closing sample."""
        if self.radius is None:
            return stratified_samples(self.near, self.far, self.n_samples, (len(origins),), perturb, generator).to(origins), None
        near, far, hit = sphere_chords(origins, directions, self.radius)
        t0, t1 = near[hit], far[hit]
        u = stratified_samples(0.0, 1.0, self.n_samples, (len(t0),), perturb, generator).to(origins)
        return torch.cat([t0[:, None] + (t1 - t0)[:, None] * u, t1[:, None]], -1), hit  # the last closes the chord

    def _query(self, field: nn.Module, points: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(density [R,S], rgb [R,S,3])`` at ``points [R,S,3]``; only occupied samples reach the field."""
        flat_points = points.reshape(-1, 3)
        flat_dirs = directions[:, None].expand_as(points).reshape(-1, 3)
        if self.occupancy is None:
            out = field(flat_points, flat_dirs)
            density, rgb = out["density"], out["rgb"]
        else:
            keep = self.occupancy.query(flat_points)
            rgb = torch.zeros_like(flat_points)
            density = torch.zeros(len(flat_points), device=points.device)
            if keep.any():
                out = field(flat_points[keep], flat_dirs[keep])
                rgb, density = rgb.index_put((keep,), out["rgb"]), density.index_put((keep,), out["density"])
        return density.reshape(points.shape[:-1]), rgb.reshape(points.shape)

    def forward(self, field: nn.Module, origins: torch.Tensor, directions: torch.Tensor, background: nn.Module | None = None,
                shading: str = "albedo", light_dirs: torch.Tensor | None = None, ambient: float = AMBIENT,
                perturb: bool = True, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Render rays ``origins, directions [R,3]`` (unit directions) through ``field``.

        ``background`` maps directions ``[R,3]`` to colours (None: black, the premultiplied
        composite). Shaded modes need ``light_dirs [R,3]``, unit, towards the light, and take
        ``ambient`` light (``shading.shade``). ``perturb``
        jitters the samples with ``generator`` (training); without it they sit at bin centres.

        Returns ``rgb [R,3]``, ``opacity [R]``, ``depth [R]`` (0 where a chord is missed), and for
        shaded modes ``normal [R,3]`` (opacity-weighted) and ``orientation [R]``: DreamFusion's
        penalty on visible normals that face away from the camera, Σ_i w_i max(0, n_i·d)².
        """
        sizes: dict[str, int] = {}
        origins = check_tensor("origins", origins, shape=["R", 3], sizes=sizes, floating=True)
        directions = check_tensor("directions", directions, shape=["R", 3], sizes=sizes, floating=True)
        check_choice("shading", shading, SHADINGS)
        shaded = shading != "albedo"
        if shaded:
            light_dirs = check_tensor("light_dirs", light_dirs, shape=["R", 3], sizes=sizes, floating=True)
            ambient = check_fraction("ambient", ambient)
        n_rays, device = len(origins), origins.device
        z, hit = self._depths(origins, directions, perturb, generator)
        closed = hit is not None
        o, d = (origins, directions) if hit is None else (origins[hit], directions[hit])
        rgb, opacity, depth = torch.zeros(n_rays, 3, device=device), torch.zeros(n_rays, device=device), \
            torch.zeros(n_rays, device=device)
        normal, orientation = torch.zeros(n_rays, 3, device=device), torch.zeros(n_rays, device=device)
        if len(o):
            lights = None if not shaded else (light_dirs if hit is None else light_dirs[hit])
            out = self._composite(field, o, d, z, closed, shading, lights, ambient)
            if self.n_fine:
                mids = 0.5 * (z[:, 1:] + z[:, :-1])
                fine = sample_pdf(mids, out["weights"][:, 1:-1].detach(), self.n_fine, deterministic=not perturb,
                                  generator=generator)
                z = torch.sort(torch.cat([z, fine], -1), -1).values
                out = self._composite(field, o, d, z, closed, shading, lights, ambient)
            if hit is None:
                rgb, opacity, depth, normal, orientation = out["rgb"], out["opacity"], out["depth"], out["normal"], \
                    out["orientation"]
            else:
                rgb, opacity, depth = rgb.index_put((hit,), out["rgb"]), opacity.index_put((hit,), out["opacity"]), \
                    depth.index_put((hit,), out["depth"])
                if shaded:
                    normal = normal.index_put((hit,), out["normal"])
                    orientation = orientation.index_put((hit,), out["orientation"])
        if background is not None:
            rgb = rgb + (1 - opacity[:, None]) * background(directions)
        result = {"rgb": rgb, "opacity": opacity, "depth": depth}
        if shaded:
            result.update(normal=normal, orientation=orientation)
        return result

    def _composite(self, field, origins, directions, z, closed: bool, shading: str, lights, ambient: float
                   ) -> dict[str, torch.Tensor]:
        """One quadrature pass at depths ``z [R,S]`` (the last a zero-density closing sample if ``closed``)."""
        at = z[:, :-1] if closed else z
        points = origins[:, None] + at[..., None] * directions[:, None]  # [R,S',3]
        density, albedo = self._query(field, points, directions)
        if closed:
            density = torch.cat([density, torch.zeros_like(density[:, :1])], -1)
        if shading == "albedo":
            out = volume_render(density, _close(albedo, closed), z)
            return dict(out, normal=None, orientation=None)
        # Normals cost three more density evaluations each; only samples that the composite
        # weighs at all need them (a few per ray, near the surface).
        flat_points, flat_density = points.reshape(-1, 3), (density[:, :-1] if closed else density).reshape(-1)
        with torch.no_grad():
            weights = volume_render(density, torch.zeros(*density.shape, 3, device=density.device), z)["weights"]
        needed = (weights[:, :-1] if closed else weights).reshape(-1) > WEIGHT_EPS
        normals = torch.zeros_like(flat_points).index_put(
            (needed,), finite_difference_normals(field.density, flat_points[needed], flat_density[needed]))
        per_sample_lights = lights.repeat_interleave(points.shape[1], 0)
        colors = shade(albedo.reshape(-1, 3), normals, per_sample_lights, shading, ambient).reshape(points.shape)
        out = volume_render(density, _close(colors, closed), z)
        weights = out["weights"][:, :-1] if closed else out["weights"]
        normals = normals.reshape(points.shape)
        facing = (normals * directions[:, None]).sum(-1).clamp(min=0)  # > 0: the normal points away from the viewer
        return dict(out, normal=(weights[..., None] * normals).sum(1), orientation=(weights.detach() * facing.pow(2)).sum(-1))

    def render(self, field: nn.Module, c2w: torch.Tensor, height: int, width: int, focal: float,
               background: nn.Module | None = None, shading: str = "albedo", light_dirs: torch.Tensor | None = None,
               ambient: float = AMBIENT, perturb: bool = False, generator: torch.Generator | None = None,
               chunk: int | None = None
               ) -> dict[str, torch.Tensor]:
        """Render whole views from ``c2w [B,4,4]``: maps ``[B,C,H,W]`` (``rgb``, ``opacity``, ``depth``, ``normal``).

        ``light_dirs [B,3]`` light each view (shaded modes); ``orientation`` is then the mean over
        all pixels, a scalar. ``chunk`` rays at a time bound the memory (None: all at once).
        """
        c2w = check_c2w("c2w", c2w)
        if c2w.ndim != 3:
            raise ValueError(f"c2w: expected a batch [B,4,4], got {list(c2w.shape)}")
        batch = len(c2w)
        origins, directions = (x.reshape(-1, 3) for x in get_rays(c2w, height, width, focal))
        lights = None
        if shading != "albedo":
            lights = check_tensor("light_dirs", light_dirs, shape=[batch, 3]).repeat_interleave(height * width, 0)
        step = chunk or len(origins)
        parts = [self(field, origins[i:i + step], directions[i:i + step], background, shading,
                      None if lights is None else lights[i:i + step], ambient, perturb, generator)
                 for i in range(0, len(origins), step)]
        flat = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}

        def image(x: torch.Tensor) -> torch.Tensor:  # [B*H*W, C] -> [B, C, H, W]
            return x.reshape(batch, height, width, -1).permute(0, 3, 1, 2)

        maps = {key: image(value if value.ndim == 2 else value[:, None]) for key, value in flat.items() if key != "orientation"}
        if "orientation" in flat:
            maps["orientation"] = flat["orientation"].sum() / len(origins)
        return maps


def _close(colors: torch.Tensor, closed: bool) -> torch.Tensor:
    """Append the closing sample's (irrelevant, zero-weight) colour to ``colors [R,S,3]``."""
    return torch.cat([colors, torch.zeros_like(colors[:, :1])], 1) if closed else colors
