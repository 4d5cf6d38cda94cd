"""3-D Gaussians as a geometry part (DreamGaussian's), and 3DGS's adaptive density control.

The parameters are stored unconstrained, so that Adam can move them anywhere: log-scales (the
scale is their exponential), quaternions (normalised on use), opacity logits and colour logits (both
through a sigmoid). DreamGaussian starts from a few thousand small, faint, grey Gaussians in a ball.

**Adaptive density control** (3DGS, section 5.2). The renders' gradient with respect to each Gaussian's
*image-space* mean says where the scene is under-reconstructed: a large average gradient means the
Gaussian would like to be in two places at once. Every so often:

* a small one (largest scale at most ``percent_dense`` of the scene's extent) is **cloned**: a copy at the
  same place, which the following gradient steps pull apart;
* a large one is **split** in two, each drawn from the original as a distribution, scales divided by 1.6;
* faint ones (opacity below ``min_opacity``) are **pruned**;
* and every ``reset_every`` steps the opacities are **reset** to at most 0.01, so that floaters must earn
  their opacity back or be pruned.

The optimiser's state follows the parameters (``resize``): new Gaussians start with zero moments, and a
pruned Gaussian's moments go with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..splatting import BACKENDS, composite, covariance_3d, integer_runs, project_gaussians, quaternion_to_rotation, \
    rasterize_gsplat
from ..validation import check_choice, check_fraction, check_positive, check_positive_int

NAMES = ("means", "log_scales", "quaternions", "opacity_logits", "color_logits")
# DreamGaussian's rates (means 1e-3, scales and rotations 5e-3, opacity 5e-2, colour 1e-2) over the run's 1e-2.
LR_SCALES = {"means": 0.1, "log_scales": 0.5, "quaternions": 0.5, "opacity_logits": 5.0, "color_logits": 1.0}


@dataclass
class GaussiansConfig:
    """``Gaussians``' start: ``count`` Gaussians uniform in a ball of ``radius``, each of scale ``scale``,
    opacity ``opacity`` and grey."""

    count: int = 5000
    radius: float = 0.5
    scale: float = 0.01
    opacity: float = 0.1
    lr_scales: dict[str, float] = field(default_factory=lambda: dict(LR_SCALES))  # each parameter's rate / the run's

    def __post_init__(self):
        check_positive_int("geometry.count", self.count)
        check_positive("geometry.radius", self.radius)
        check_positive("geometry.scale", self.scale)
        check_fraction("geometry.opacity", self.opacity)
        if set(self.lr_scales) != set(NAMES):
            raise ValueError(f"geometry.lr_scales: expected one rate for each of {', '.join(NAMES)}, "
                             f"got {', '.join(self.lr_scales) or 'none'}")
        for name, value in self.lr_scales.items():
            check_positive(f"geometry.lr_scales.{name}", value)

    def build(self, generator: torch.Generator | None = None) -> "Gaussians":
        gaussians = Gaussians.in_ball(self.count, self.radius, self.scale, self.opacity, generator)
        gaussians.lr_scales = dict(self.lr_scales)
        return gaussians


class Gaussians(nn.Module):
    """N Gaussians: ``means [N,3]``, and through their activations ``scales [N,3]``, ``rotations [N,4]`` (unit),
    ``opacities [N]`` and ``colors [N,3]``. ``render`` splats them and keeps the image-space means' gradient
    statistics that ``densify`` reads."""

    def __init__(self, means: torch.Tensor, log_scales: torch.Tensor, quaternions: torch.Tensor,
                 opacity_logits: torch.Tensor, color_logits: torch.Tensor):
        super().__init__()
        for name, value in zip(NAMES, (means, log_scales, quaternions, opacity_logits, color_logits)):
            setattr(self, name, nn.Parameter(value.detach().clone()))
        self.lr_scales = dict(LR_SCALES)
        self.reset_statistics()

    @classmethod
    def in_ball(cls, count: int, radius: float = 0.5, scale: float = 0.01, opacity: float = 0.1,
                generator: torch.Generator | None = None) -> "Gaussians":
        """``count`` Gaussians uniform in a ball: axis-aligned, of one ``scale``, ``opacity`` and grey."""
        direction = F.normalize(torch.randn(count, 3, generator=generator), dim=-1)
        means = direction * radius * torch.rand(count, 1, generator=generator) ** (1 / 3)  # uniform in the volume
        quaternions = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(count, 4)
        return cls(means, torch.full((count, 3), float(torch.log(torch.tensor(scale)))), quaternions,
                   torch.full((count,), float(torch.logit(torch.tensor(opacity)))), torch.zeros(count, 3))

    def __len__(self) -> int:
        return len(self.means)

    @property
    def scales(self) -> torch.Tensor:
        return self.log_scales.exp()

    @property
    def rotations(self) -> torch.Tensor:
        return F.normalize(self.quaternions, dim=-1)

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def colors(self) -> torch.Tensor:
        return torch.sigmoid(self.color_logits)

    def parameter_groups(self) -> list[dict]:
        """One optimiser group per kind of parameter, at ``lr_scales[name]`` times the run's rate (a system's optimiser)."""
        return [{"params": [getattr(self, name)], "lr_scale": self.lr_scales[name]} for name in NAMES]

    def reset_statistics(self) -> None:
        """Forget the accumulated image-space gradients (after each densification)."""
        self.grad_sum = torch.zeros(len(self.means), device=self.means.device)
        self.seen = torch.zeros(len(self.means), device=self.means.device)
        self._mean2d: list[torch.Tensor] = []

    def render(self, c2w: torch.Tensor, height: int, width: int, focal: float, background: torch.Tensor,
               backend: str = "torch") -> dict[str, torch.Tensor]:
        """``splatting.render_gaussians`` of these Gaussians (``backend`` "torch", or "gsplat" on CUDA); the image-space
        means are kept so that, after the loss's ``backward()``, ``accumulate()`` can read their gradient."""
        check_choice("backend", backend, BACKENDS)
        if backend == "gsplat":
            out = rasterize_gsplat(self.means, self.scales, self.rotations, self.opacities, self.colors, c2w, height,
                                   width, focal, background)
            self._keep_for_statistics(out.pop("mean2d"))
            return out
        projected = project_gaussians(self.means, covariance_3d(self.scales, self.rotations), c2w, height, width, focal)
        self._keep_for_statistics(projected["mean2d"])
        return composite(projected["mean2d"], projected["cov2d"], projected["depth"], self.opacities, self.colors,
                         height, width, background)

    def _keep_for_statistics(self, mean2d: torch.Tensor) -> None:
        if mean2d.requires_grad:
            mean2d.retain_grad()
            self._mean2d.append(mean2d)

    @torch.no_grad()
    def density_grid(self, resolution: int = 64, bounds=(-1.0, 1.0), cutoff: float = 3.0,
                     max_pairs: int = 1 << 21) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussians as a field on the course's grid (``mesh.grid_points``): ``density [R,R,R]``, the sum of
        opacity · exp(-½ dᵀΣ⁻¹d) over the Gaussians, and ``color [R,R,R,3]``, their colours weighted the same way.

        Each Gaussian is evaluated only at the grid points within ``cutoff`` of its largest standard deviation
        (DreamGaussian's block-wise culling, per Gaussian): pairs of (point, Gaussian), ``max_pairs`` at a time.
        """
        resolution = check_positive_int("resolution", resolution)
        lo, hi = (float(b) for b in bounds)
        cell = (hi - lo) / (resolution - 1)
        means, inverse = self.means.detach(), torch.linalg.inv(covariance_3d(self.scales, self.rotations))
        reach = cutoff * self.scales.max(-1).values[:, None]
        low = torch.ceil((means - reach - lo) / cell).clamp(0, resolution - 1).long()
        size = (torch.floor((means + reach - lo) / cell).clamp(-1, resolution - 1).long() - low + 1).clamp(min=0)
        counts = size.prod(-1)
        summed = torch.zeros(resolution ** 3, 4, device=means.device)
        start = 0
        while start < len(means):  # chunks of whole Gaussians, each with at most max_pairs points (or one Gaussian)
            stop = start + max(1, int(torch.searchsorted(torch.cumsum(counts[start:], 0), max_pairs)))
            gaussian, local = integer_runs(torch.zeros_like(counts[start:stop]), counts[start:stop])  # a box's cells
            gaussian = gaussian + start
            sx, sy = size[gaussian, 0], size[gaussian, 1]
            index = low[gaussian] + torch.stack([local % sx, local // sx % sy, local // (sx * sy)], -1)
            d = lo + cell * index - means[gaussian]
            weight = self.opacities[gaussian] * torch.exp(-0.5 * torch.einsum("pi,pij,pj->p", d, inverse[gaussian], d))
            flat = (index[:, 0] * resolution + index[:, 1]) * resolution + index[:, 2]
            summed.index_add_(0, flat, torch.cat([weight[:, None], weight[:, None] * self.colors[gaussian]], 1))
            start = stop
        density, color = summed[:, 0], summed[:, 1:] / summed[:, :1].clamp(min=1e-8)
        return density.reshape((resolution,) * 3), color.reshape((resolution,) * 3 + (3,))

    @torch.no_grad()
    def accumulate(self) -> None:
        """Add the last renders' image-space gradient norms to the statistics (3DGS's ``add_densification_stats``)."""
        for mean2d in self._mean2d:
            if mean2d.grad is not None:
                norm = mean2d.grad.norm(dim=-1).reshape(-1)  # [N] (gsplat's means are [1,N,2])
                self.grad_sum += norm
                self.seen += (norm > 0).float()
        self._mean2d = []

    @torch.no_grad()
    def densify(self, optimizer: torch.optim.Optimizer, grad_threshold: float, extent: float,
                percent_dense: float = 0.01, min_opacity: float = 0.005,
                generator: torch.Generator | None = None) -> dict[str, int]:
        """Clone, split and prune (the module docstring); returns how many of each. The statistics start over."""
        average = self.grad_sum / self.seen.clamp(min=1)
        hot = average >= grad_threshold
        small = self.scales.max(-1).values <= percent_dense * extent
        clone, split = hot & small, hot & ~small
        samples = self._split_samples(split, generator)
        keep = ~split & (self.opacities >= min_opacity)
        new = {name: torch.cat([getattr(self, name)[clone], samples[name]]) for name in NAMES}
        counts = {"cloned": int(clone.sum()), "split": int(split.sum()), "pruned": int((~keep & ~split).sum())}
        resize(self, optimizer, keep.nonzero()[:, 0], new)
        self.reset_statistics()
        return counts

    def _split_samples(self, split: torch.Tensor, generator) -> dict[str, torch.Tensor]:
        """Two Gaussians for each one in ``split``: means drawn from it, scales divided by 1.6, the rest copied."""
        rows = split.nonzero()[:, 0].repeat(2)
        scales = self.scales[rows]
        offsets = torch.randn(scales.shape, generator=generator).to(scales) * scales
        means = self.means[rows] + (quaternion_to_rotation(self.rotations[rows]) @ offsets[..., None])[..., 0]
        return {"means": means, "log_scales": torch.log(scales / 1.6), "quaternions": self.quaternions[rows],
                "opacity_logits": self.opacity_logits[rows], "color_logits": self.color_logits[rows]}

    @torch.no_grad()
    def reset_opacity(self, optimizer: torch.optim.Optimizer, ceiling: float = 0.01) -> None:
        """Opacities to at most ``ceiling``; their Adam moments restart."""
        self.opacity_logits.copy_(torch.minimum(self.opacity_logits, torch.logit(torch.tensor(ceiling)).to(self.opacity_logits)))
        state = optimizer.state.get(self.opacity_logits, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].zero_()


def resize(model: Gaussians, optimizer: torch.optim.Optimizer, keep: torch.Tensor, new: dict[str, torch.Tensor]) -> None:
    """Replace each parameter by its rows ``keep`` followed by ``new[name]``, in the model and in ``optimizer``: the kept
    rows keep their Adam moments, the new rows start at zero."""
    for name in NAMES:
        old = getattr(model, name)
        grown = nn.Parameter(torch.cat([old.detach()[keep], new[name].to(old)]))
        state = optimizer.state.pop(old, None)
        for group in optimizer.param_groups:
            group["params"] = [grown if p is old else p for p in group["params"]]
        if state is not None:  # a new dict: the old one may be held by an optimizer.state_dict() taken before
            optimizer.state[grown] = {**state, **{key: torch.cat([state[key][keep], torch.zeros_like(new[name])])
                                                  for key in ("exp_avg", "exp_avg_sq")}}
        setattr(model, name, grown)


__all__ = ["Gaussians", "GaussiansConfig", "resize"]
