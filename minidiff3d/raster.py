"""A differentiable triangle rasterizer in pure PyTorch, split as nvdiffrast splits it.

    project      world vertices [V,3] and a course camera  ->  OpenGL clip space [V,4]
    rasterize    which triangle each pixel sees, with its barycentrics and depth
    interpolate  any vertex attribute [V,C] at every pixel, through the barycentrics
    antialias    blends across silhouette edges, so that edges carry gradients to vertex positions

Which triangle a pixel sees is a discrete choice with no gradient. Everything computed from that
choice is differentiable: the barycentrics and depth in the vertex positions, ``interpolate`` in the
attributes and (through the barycentrics) the positions. That alone gives no gradient for moving a
silhouette, since a pixel's colour jumps when its triangle changes; ``antialias`` turns the jump into
a blend whose weight is where the edge crosses between two pixel centres, a smooth function of the
edge's vertices (nvdiffrast's analytic antialiasing, Laine et al. 2020).

Conventions (the course's, so the rasterizer and the ray marcher agree pixel for pixel):

* pixel row ``i`` counts downwards and column ``j`` to the right, with centres at ``(j + 0.5, i + 0.5)``,
  as ``cameras.get_rays``; so row 0 is the top of the image (nvdiffrast's row 0 is the bottom);
* clip space is OpenGL's: ``x_ndc = x/w`` in [-1, 1] left to right, ``y_ndc`` bottom to top, and
  ``w = -z_view``, the depth in front of the camera;
* ``depth`` is that camera-space depth ``w`` (``cameras.project_points``' depth), not the distance
  along the ray; the ray distance is ``depth * |d|`` for ``get_rays(..., normalize=False)``'s ``d``.

Triangles with a vertex at or behind the eye plane (``w <= 0``) are dropped whole, not clipped: a
projection through ``1/w`` would fold them in front of the camera. Parts of triangles outside the
near and far planes are dropped per pixel.

Speed: each triangle is tested only at the pixel centres inside its bounding box, never over the
whole image, so the work grows with the area the triangles cover.
"""

from __future__ import annotations

import torch

from .cameras import check_c2w
from .validation import check_positive, check_positive_int, check_tensor

def projection_matrix(height: int, width: int, focal: float, near: float = 0.1, far: float = 10.0) -> torch.Tensor:
    """OpenGL's perspective projection ``[4,4]`` for a pinhole of ``focal`` pixels centred on the image."""
    height, width = check_positive_int("height", height), check_positive_int("width", width)
    focal, near, far = check_positive("focal", focal), check_positive("near", near), check_positive("far", far)
    if not far > near:
        raise ValueError(f"near, far: expected near < far, got near={near}, far={far}")
    return torch.tensor([[2 * focal / width, 0.0, 0.0, 0.0],
                         [0.0, 2 * focal / height, 0.0, 0.0],
                         [0.0, 0.0, -(far + near) / (far - near), -2 * far * near / (far - near)],
                         [0.0, 0.0, -1.0, 0.0]])


def project(vertices: torch.Tensor, c2w: torch.Tensor, height: int, width: int, focal: float, near: float = 0.1,
            far: float = 10.0) -> torch.Tensor:
    """Clip-space positions ``[V,4]`` (or ``[B,V,4]`` for ``c2w [B,4,4]``) of world ``vertices [V,3]``."""
    vertices = check_tensor("vertices", vertices, shape=["V", 3], floating=True)
    c2w = check_c2w("c2w", c2w).to(vertices)
    if c2w.ndim not in (2, 3):
        raise ValueError(f"c2w: expected [4,4] or [B,4,4], got {list(c2w.shape)}")
    w2c = torch.linalg.inv(c2w)
    homogeneous = torch.cat([vertices, torch.ones_like(vertices[:, :1])], -1)
    full = projection_matrix(height, width, focal, near, far).to(vertices) @ w2c  # [...,4,4]
    return homogeneous @ full.transpose(-1, -2)


def _check_mesh(vertices_clip: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(vertices_clip [B,V,4], faces [F,3], batched)`` after checking both."""
    vertices_clip = check_tensor("vertices_clip", vertices_clip, floating=True)
    if vertices_clip.ndim not in (2, 3) or vertices_clip.shape[-1] != 4:
        raise ValueError(f"vertices_clip: expected [V,4] or [B,V,4] clip-space positions, got {list(vertices_clip.shape)}")
    faces = check_tensor("faces", faces, shape=["F", 3])
    if faces.is_floating_point():
        raise TypeError(f"faces: expected an integer tensor of vertex indices, got dtype {faces.dtype}")
    n_vertices = vertices_clip.shape[-2]
    if len(faces) and (faces.min() < 0 or faces.max() >= n_vertices):
        raise ValueError(f"faces: expected vertex indices in [0, {n_vertices}), got [{faces.min().item()}, "
                         f"{faces.max().item()}]")
    batched = vertices_clip.ndim == 3
    return (vertices_clip if batched else vertices_clip[None]), faces.long().to(vertices_clip.device), batched


def _screen(vertices_clip: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates ``[...,2]`` (x right, y down, as ``get_rays``) and ``1/w [...]`` of clip positions ``[...,4]``."""
    w = vertices_clip[..., 3]
    inv_w = 1 / torch.where(w > 0, w, torch.ones_like(w))  # w <= 0 only in dropped triangles
    x = (vertices_clip[..., 0] * inv_w + 1) * (width / 2)
    y = (1 - vertices_clip[..., 1] * inv_w) * (height / 2)
    return torch.stack([x, y], -1), inv_w


_NEXT, _AFTER = [1, 2, 0], [2, 0, 1]  # edge k runs from vertex k+1 to vertex k+2, opposite vertex k


def edge_functions(tri: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``[...,3]``: for triangles ``tri [...,3,2]`` and points ``p [...,2]``, twice the signed areas of
    (b, c, p), (c, a, p), (a, b, p): the barycentric weights of a, b, c, unnormalised."""
    start, end = tri[..., _NEXT, :], tri[..., _AFTER, :]
    along, to_p = end - start, p[..., None, :] - start
    return along[..., 0] * to_p[..., 1] - along[..., 1] * to_p[..., 0]


def perspective_correct(screen_weights: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``[...,3]`` barycentrics in the triangle's own plane from weights that are linear on the screen
    (``screen_weights [...,3]``, any scale) and the corners' clip-space ``w [...,3]`` (their depths).

    Projection divides by w, so equal steps on the screen are unequal steps on a slanted triangle: screen
    weights under-weight the far corner, and a texture drawn with them slides towards the near one.
    Weighting each by 1/w and renormalising undoes it (what GPUs do for every varying)."""
    over_w = screen_weights / w
    return over_w / over_w.sum(-1, keepdim=True)


@torch.no_grad()
def _visible_triangles(screen: torch.Tensor, inv_w: torch.Tensor, z_ndc: torch.Tensor, w: torch.Tensor,
                       faces: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B,H,W]`` the index of the nearest triangle covering each pixel centre (-1: none).

    Each triangle is tested only at the pixel centres inside its bounding box, so the work grows
    with the area the triangles cover, not with triangles times pixels. Over a triangle, its three
    screen-space barycentrics, NDC depth and ``1/w`` are all affine in the pixel position, so each is
    three coefficients per triangle and one multiply-add per tested pixel.
    """
    batch, device = screen.shape[0], screen.device
    tri = screen[:, faces]  # [B,F,3,2]
    lo = torch.ceil(tri.amin(2) - 0.5).long().clamp(min=0)  # the first and last pixel centre in the bounding box
    hi = torch.minimum(torch.floor(tri.amax(2) - 0.5).long(), torch.tensor([width - 1, height - 1], device=device))
    area = edge_functions(tri, tri[..., 2, :])[..., 2]  # [B,F]: twice the signed area of (a, b, c)
    tri_z, tri_w = z_ndc[:, faces], w[:, faces]
    usable = (tri_w > 0).all(-1) & (area.abs() > 1e-12) & (lo <= hi).all(-1)
    usable &= ~((tri_z < -1).all(-1) | (tri_z > 1).all(-1))  # wholly before the near or beyond the far plane
    b_idx, f_idx = usable.nonzero(as_tuple=True)
    ids = torch.full((batch * height * width,), -1, dtype=torch.long, device=device)
    if len(f_idx) == 0:
        return ids.reshape(batch, height, width)
    # Barycentric weight k is affine: (e_k at the origin) + x d/dx + y d/dy, divided by the area.
    corners, area = tri[b_idx, f_idx], area[b_idx, f_idx]
    starts, ends = corners[:, _NEXT], corners[:, _AFTER]  # [P,3,2]
    dx, dy = -(ends[..., 1] - starts[..., 1]), ends[..., 0] - starts[..., 0]
    origin = -(dx * starts[..., 0] + dy * starts[..., 1])
    coefficients = torch.stack([origin, dx, dy], -1) / area[:, None, None]  # [P,3,3]
    values = torch.stack([tri_z[b_idx, f_idx], inv_w[:, faces][b_idx, f_idx]], 1)  # [P,2,3]: z_ndc and 1/w at the vertices
    coefficients = torch.cat([coefficients, values @ coefficients], 1)  # [P,5,3]: 3 weights, z_ndc, 1/w
    # Every (triangle, pixel) pair of the bounding boxes.
    span = hi[b_idx, f_idx] - lo[b_idx, f_idx] + 1  # [P,2]
    counts = span[:, 0] * span[:, 1]
    pair = torch.repeat_interleave(torch.arange(len(f_idx), device=device), counts)
    offset = torch.arange(len(pair), device=device) - (counts.cumsum(0) - counts)[pair]
    px = lo[b_idx, f_idx][pair, 0] + offset % span[pair, 0]
    py = lo[b_idx, f_idx][pair, 1] + offset // span[pair, 0]
    k = coefficients[pair]  # [E,5,3]
    at = k[..., 0] + k[..., 1] * (px[:, None] + 0.5) + k[..., 2] * (py[:, None] + 0.5)  # [E,5]
    inside = (at[:, :3] >= 0).all(-1) & (at[:, 3] >= -1) & (at[:, 3] <= 1)  # >= 0: a pixel on a shared edge has no gap
    pair, px, py, key = pair[inside], px[inside], py[inside], at[inside, 4]  # key: 1/w, larger is nearer
    pixel = (b_idx[pair] * height + py) * width + px
    nearest = torch.full((batch * height * width,), -torch.inf, dtype=key.dtype, device=device).scatter_reduce(0, pixel, key, "amax")
    winner = key >= nearest[pixel]
    lowest = torch.full_like(ids, len(faces)).scatter_reduce(0, pixel[winner], f_idx[pair][winner], "amin")  # ties
    return torch.where(lowest == len(faces), ids, lowest).reshape(batch, height, width)


def rasterize(vertices_clip: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    """Rasterize triangles ``faces [F,3]`` of clip-space ``vertices_clip [B,V,4]`` (or ``[V,4]``) into ``height x width``.

    Returns a dict, without the B dimension for unbatched input:

    * ``triangle_id [B,H,W]`` (long): the nearest triangle at each pixel centre, -1 where none;
    * ``barycentrics [B,H,W,3]``: perspective-correct weights of the triangle's three vertices (0 where none);
    * ``depth [B,H,W]``: camera-space depth ``w`` of the surface (0 where none).

    The barycentrics and depth are differentiable in ``vertices_clip``; which triangle wins is not.
    """
    height, width = check_positive_int("height", height), check_positive_int("width", width)
    clip, faces, batched = _check_mesh(vertices_clip, faces)
    screen, inv_w = _screen(clip, height, width)
    z_ndc = clip[..., 2] / torch.where(clip[..., 3] > 0, clip[..., 3], torch.ones_like(clip[..., 3]))
    triangle_id = _visible_triangles(screen.detach(), inv_w.detach(), z_ndc.detach(), clip[..., 3].detach(), faces,
                                     height, width)
    out = _surface_at(triangle_id, screen, inv_w, faces)
    return out if batched else {key: value[0] for key, value in out.items()}


def _surface_at(triangle_id: torch.Tensor, screen: torch.Tensor, inv_w: torch.Tensor, faces: torch.Tensor) -> dict:
    """The raster dict for a given choice of ``triangle_id [B,H,W]``: each winner's perspective-correct
    barycentrics and depth, computed with autograd on (this is where gradients reach the vertices)."""
    batch, height, width = triangle_id.shape
    covered = triangle_id >= 0
    b_idx, rows, cols = covered.nonzero(as_tuple=True)
    corner = faces[triangle_id[covered]]  # [N,3]
    tri, tri_inv_w = screen[b_idx[:, None], corner], inv_w[b_idx[:, None], corner]  # [N,3,2], [N,3]
    centres = torch.stack([cols, rows], -1).to(screen.dtype) + 0.5
    tri_w = 1 / tri_inv_w
    correct = perspective_correct(edge_functions(tri, centres), tri_w)
    barycentrics = screen.new_zeros(batch, height, width, 3).index_put((b_idx, rows, cols), correct)
    # w is affine in the triangle's plane, so its perspective-correct blend is exact
    depth = screen.new_zeros(batch, height, width).index_put((b_idx, rows, cols), (correct * tri_w).sum(-1))
    return {"triangle_id": triangle_id, "barycentrics": barycentrics, "depth": depth}


def _batched_raster(raster: dict) -> tuple[dict, bool]:
    for key in ("triangle_id", "barycentrics", "depth"):
        if key not in raster:
            raise ValueError(f"raster: expected the dict that rasterize returns (with {key!r}), got keys {sorted(raster)}")
    batched = raster["triangle_id"].ndim == 3
    return (raster if batched else {key: value[None] for key, value in raster.items()}), batched


def interpolate(attributes: torch.Tensor, raster: dict, faces: torch.Tensor) -> torch.Tensor:
    """Vertex ``attributes [V,C]`` (or ``[B,V,C]``) at every pixel: ``[B,H,W,C]`` (``[H,W,C]`` unbatched), 0 where no triangle.

    Differentiable in ``attributes`` and, through ``raster["barycentrics"]``, in the vertex positions.
    """
    raster, batched = _batched_raster(raster)
    attributes = check_tensor("attributes", attributes, floating=True)
    if attributes.ndim == 2:
        attributes = attributes[None].expand(raster["triangle_id"].shape[0], -1, -1)
    if attributes.ndim != 3 or attributes.shape[0] != raster["triangle_id"].shape[0]:
        raise ValueError(f"attributes: expected [V,C] or [{raster['triangle_id'].shape[0]},V,C] (the raster's batch), "
                         f"got {list(attributes.shape)}")
    faces = check_tensor("faces", faces, shape=["F", 3]).long().to(attributes.device)
    covered = raster["triangle_id"] >= 0
    b_idx, rows, cols = covered.nonzero(as_tuple=True)
    corner = faces[raster["triangle_id"][covered]]  # [N,3]
    values = (attributes[b_idx[:, None], corner] * raster["barycentrics"][covered][..., None]).sum(1)  # [N,C]
    out = attributes.new_zeros(*covered.shape, attributes.shape[-1]).index_put((b_idx, rows, cols), values)
    return out if batched else out[0]


def face_neighbours(faces: torch.Tensor, n_vertices: int) -> torch.Tensor:
    """``[F,3]``: the face across edge k of each face (the edge opposite vertex k), -1 where the edge is open."""
    ends = torch.stack([faces[:, _NEXT], faces[:, _AFTER]], -1).reshape(-1, 2)  # [3F,2]
    key = ends.min(-1).values * n_vertices + ends.max(-1).values
    order = torch.argsort(key)
    same = key[order][1:] == key[order][:-1]  # neighbours in sorted order share an edge
    neighbour = torch.full_like(key, -1)
    first, second = order[:-1][same], order[1:][same]
    neighbour[first], neighbour[second] = second // 3, first // 3
    return neighbour.reshape(-1, 3)


def antialias(image: torch.Tensor, raster: dict, vertices_clip: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Blend ``image [B,H,W,C]`` (or ``[H,W,C]``) across silhouette edges, differentiably in the vertex positions.

    For every pair of horizontal or vertical neighbours that see different surfaces, the nearer
    pixel's triangle has an edge between the two centres. Where that edge crosses the segment
    between them, at a fraction ``s`` of the way, the pixel on the far side of the midpoint takes
    ``|s - 1/2|`` of the other's colour: the share of its footprint (along that axis) that the edge
    gives to the other surface. Only silhouette edges blend: edges with no face beyond them, or whose
    face beyond turns away from the camera (so a closed mesh must wind its faces consistently).
    """
    raster, batched = _batched_raster(raster)
    clip, faces, _ = _check_mesh(vertices_clip, faces)
    image = check_tensor("image", image, floating=True)
    image = image if batched else image[None]
    ids = raster["triangle_id"]
    if image.shape[:3] != ids.shape or clip.shape[0] != ids.shape[0]:
        raise ValueError(f"image, vertices_clip: expected a batch of {ids.shape[0]} images [{ids.shape[1]},"
                         f"{ids.shape[2]},C] to match the raster, got {list(image.shape)} and {list(clip.shape)}")
    batch, height, width = ids.shape
    screen, _ = _screen(clip, height, width)
    inv_depth = torch.where(ids >= 0, 1 / raster["depth"].detach().clamp(min=1e-12), torch.zeros_like(raster["depth"]))
    flat_ids, flat_inv_depth = ids.reshape(-1), inv_depth.reshape(-1)
    # Pixel pairs (p, q): q is p's right neighbour or the one below, and they see different surfaces.
    index = torch.arange(batch * height * width, device=ids.device).reshape(batch, height, width)
    p = torch.cat([index[:, :, :-1].reshape(-1), index[:, :-1, :].reshape(-1)])
    q = torch.cat([index[:, :, 1:].reshape(-1), index[:, 1:, :].reshape(-1)])
    differ = flat_ids[p] != flat_ids[q]
    p, q = p[differ], q[differ]
    p_front = flat_inv_depth[p] >= flat_inv_depth[q]  # background has 1/w = 0, so it is never in front
    inner, outer = torch.where(p_front, p, q), torch.where(p_front, q, p)  # inner: the nearer surface's pixel
    front, behind = flat_ids[inner], flat_ids[outer]
    b_idx = inner // (height * width)

    def centre(pixel):
        return torch.stack([pixel % width, pixel // width % height], -1).to(screen.dtype) + 0.5

    corner = faces[front]  # [P,3]
    tri = screen[b_idx[:, None], corner]  # [P,3,2], with gradients
    e_in, e_out = edge_functions(tri, centre(inner)), edge_functions(tri, centre(outer))
    sign = torch.sign(e_in.detach().sum(-1, keepdim=True))  # the winding: inside is where e * sign >= 0
    e_in, e_out = e_in * sign, e_out * sign
    # Where the segment from the inner centre to the outer one leaves the triangle, and through which edge.
    s_edge = torch.where(e_out < 0, e_in / (e_in - e_out).clamp(min=1e-12), torch.full_like(e_in, 2.0))
    s, edge = s_edge.min(-1)
    # Only a silhouette edge blends: one with no face beyond it, or whose face beyond turns away from the
    # camera. Crossing an edge into a neighbour that faces the same way stays on one surface.
    beyond = face_neighbours(faces, clip.shape[-2])[front, edge]  # [P]
    triangles = screen[:, faces].detach()
    area = edge_functions(triangles, triangles[..., 2, :])[..., 2]  # [B,F] signed: the winding on screen
    turns = torch.sign(area[b_idx, front]) != torch.sign(area[b_idx, beyond.clamp(min=0)])
    shared = (beyond >= 0) & ~turns
    keep = ~shared & (s <= 1)
    inner, outer, s = inner[keep], outer[keep], s[keep]
    # Past the midpoint the front surface spills into the outer pixel; short of it, the back one into the inner.
    # One branch only, so an edge exactly at the midpoint has slope 1, not one from each side.
    past = (s > 0.5)[:, None]
    flat = image.reshape(-1, image.shape[-1])
    front_colour, back_colour = flat[inner], flat[outer]
    difference = front_colour - back_colour
    delta = torch.zeros_like(flat)
    delta = delta.index_put((outer,), torch.where(past, (s - 0.5)[:, None] * difference, 0.0), accumulate=True)
    delta = delta.index_put((inner,), torch.where(past, 0.0, (s - 0.5)[:, None] * difference), accumulate=True)
    out = (flat + delta).reshape(image.shape)
    return out if batched else out[0]


__all__ = ["antialias", "edge_functions", "face_neighbours", "interpolate", "perspective_correct", "project", "projection_matrix",
           "rasterize"]
