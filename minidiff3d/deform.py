"""Deforming a template mesh onto a point cloud, the first of chapter 03's three routes to meshes.

An icosphere's vertices are moved by gradient descent so that points sampled on its surface
match a target cloud in Chamfer distance. Alone, that objective tears the mesh: vertices race
to the nearest target points and faces fold. Two regularisers keep it a surface:

* the **uniform Laplacian** ``L x_i = x_i - mean_{j ∈ N(i)} x_j`` is small when each vertex sits
  at the centre of its neighbours (smooth, evenly spread vertices);
* **normal consistency** ``1 - cos(n_a, n_b)`` over faces sharing an edge is small when the
  surface does not crease.

The topology never changes: a sphere stays a sphere, so a torus cannot be reached this way,
which is what the implicit route (SDF -> marching cubes) fixes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import trimesh

from .metrics import chamfer_distance
from .raster import face_neighbours
from .validation import check_positive_int, check_tensor


@dataclass
class Template:
    """A mesh with the connectivity the losses need: ``faces [F,3]``, ``edges [E,2]``, ``face_pairs [P,2]``."""

    vertices: torch.Tensor
    faces: torch.Tensor
    edges: torch.Tensor
    face_pairs: torch.Tensor

    @classmethod
    def icosphere(cls, subdivisions: int = 3, radius: float = 0.5) -> Template:
        mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
        as_long = lambda a: torch.tensor(a, dtype=torch.long)
        return cls(torch.as_tensor(mesh.vertices, dtype=torch.float32), as_long(mesh.faces), as_long(mesh.edges_unique),
                   as_long(mesh.face_adjacency))

    def to_trimesh(self, vertices: torch.Tensor | None = None) -> trimesh.Trimesh:
        vertices = self.vertices if vertices is None else vertices
        return trimesh.Trimesh(vertices.detach().cpu().numpy(), self.faces.numpy(), process=False)


def mesh_connectivity(faces: torch.Tensor, n_vertices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edges [E,2], face_pairs [P,2])`` of ``faces [F,3]``: the regularisers' connectivity, in torch, for a mesh
    that changes every step (DMTet's); each edge once, each pair of faces across an edge once."""
    neighbours = face_neighbours(faces, n_vertices)  # [F,3]: the face across edge k (opposite vertex k)
    face = torch.arange(len(faces), device=faces.device)[:, None].expand_as(neighbours)
    once = (neighbours < 0) | (neighbours > face)  # an open edge, or the lower-numbered face of two
    ends = torch.stack([faces[:, [1, 2, 0]], faces[:, [2, 0, 1]]], -1)  # [F,3,2]
    paired = neighbours > face
    return ends[once], torch.stack([face[paired], neighbours[paired]], -1)


def uniform_laplacian(vertices: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """``L x [V,3]``: each vertex minus the mean of its neighbours along ``edges [E,2]``."""
    vertices = check_tensor("vertices", vertices, shape=["V", 3], floating=True)
    edges = check_tensor("edges", edges, shape=["E", 2])
    i, j = torch.cat([edges[:, 0], edges[:, 1]]), torch.cat([edges[:, 1], edges[:, 0]])
    neighbour_sum = torch.zeros_like(vertices).index_add_(0, i, vertices[j])
    degree = torch.zeros(len(vertices), device=vertices.device, dtype=vertices.dtype).index_add_(
        0, i, torch.ones_like(i, dtype=vertices.dtype))
    return vertices - neighbour_sum / degree.clamp(min=1)[:, None]


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit normals ``[F,3]`` of triangles ``faces [F,3]`` (counter-clockwise = outward)."""
    a, b, c = vertices[faces].unbind(1)
    return torch.nn.functional.normalize(torch.linalg.cross(b - a, c - a), dim=-1)


def normal_consistency(vertices: torch.Tensor, faces: torch.Tensor, face_pairs: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos`` between the normals of adjacent faces ``face_pairs [P,2]``: 0 for a flat sheet."""
    normals = face_normals(vertices, faces)
    return (1 - (normals[face_pairs[:, 0]] * normals[face_pairs[:, 1]]).sum(-1)).mean()


def sample_surface(vertices: torch.Tensor, faces: torch.Tensor, n_points: int, generator: torch.Generator | None = None):
    """``[N,3]`` points uniform over the mesh by area, differentiable in ``vertices``."""
    a, b, c = vertices[faces].unbind(1)
    areas = torch.linalg.cross(b - a, c - a).norm(dim=-1).detach()
    chosen = torch.multinomial(areas, n_points, replacement=True, generator=generator)
    u, v = torch.rand(2, n_points, 1, generator=generator).to(vertices)
    flip = u + v > 1  # fold the unit square onto the triangle
    u, v = torch.where(flip, 1 - u, u), torch.where(flip, 1 - v, v)
    return a[chosen] + u * (b - a)[chosen] + v * (c - a)[chosen]


def deformation_loss(vertices: torch.Tensor, template: Template, target: torch.Tensor, n_samples: int = 2048,
                     w_laplacian: float = 1.0, w_normal: float = 0.01, generator: torch.Generator | None = None):
    """Chamfer to ``target [N,3]`` plus the two regularisers; returns ``(total, parts)``."""
    points = sample_surface(vertices, template.faces, n_samples, generator)
    parts = {
        "chamfer": chamfer_distance(points[None], target[None])[0],
        "laplacian": uniform_laplacian(vertices, template.edges).square().sum(-1).mean(),
        "normal": normal_consistency(vertices, template.faces, template.face_pairs),
    }
    return parts["chamfer"] + w_laplacian * parts["laplacian"] + w_normal * parts["normal"], parts


@dataclass
class DeformResult:
    mesh: trimesh.Trimesh
    history: dict[str, list] = field(default_factory=dict)


def fit_template(target: torch.Tensor, template: Template | None = None, steps: int = 400, lr: float = 0.01,
                 w_laplacian: float = 1.0, w_normal: float = 0.01, n_samples: int = 2048, seed: int = 0) -> DeformResult:
    """Deform ``template`` (an icosphere of radius 0.5 by default) onto the cloud ``target [N,3]``.

    Adam moves the vertex offsets; ``history`` records each loss term every step.
    """
    target = check_tensor("target", target, shape=["N", 3], floating=True)
    steps = check_positive_int("steps", steps)
    template = template or Template.icosphere()
    offsets = torch.zeros_like(template.vertices, requires_grad=True)
    optimiser = torch.optim.Adam([offsets], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history = {"chamfer": [], "laplacian": [], "normal": []}
    for _ in range(steps):
        loss, parts = deformation_loss(template.vertices + offsets, template, target, n_samples, w_laplacian, w_normal, generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        for name, value in parts.items():
            history[name].append(value.item())
    return DeformResult(template.to_trimesh(template.vertices + offsets.detach()), history)
