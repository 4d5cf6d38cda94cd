"""The rasterizer against a naive per-triangle loop, in the same run: forward + backward of one frame.

One frame is what the fine stage of Magic3D does per view: project an icosphere, rasterize it,
interpolate vertex colours, antialias, and backpropagate the image's sum to the vertices and
colours. The baseline finds each pixel's triangle by looping over the triangles, testing every pixel
of the image against each (edge functions and a z-buffer), and then shares the rest of the frame,
so the columns differ only in how visibility is found; "agree" is the fraction of pixels where both
choose the same triangle.

    .venv/bin/python benchmarks/raster.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import platform

import torch
import trimesh

from minidiff3d import raster
from minidiff3d.cameras import focal_from_fov, orbit_camera
from timing import seconds  # benchmarks/ is on the path when a script runs


@torch.no_grad()
def loop_visibility(screen: torch.Tensor, inv_w: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[1,H,W]`` nearest triangle per pixel, one triangle at a time over the whole image (the textbook loop)."""
    rows, cols = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    pixels = torch.stack([cols, rows], -1)  # [H,W,2]
    best = torch.full((height, width), -torch.inf)
    ids = torch.full((height, width), -1, dtype=torch.long)
    for f, corner in enumerate(faces):
        tri, tri_inv_w = screen[0, corner], inv_w[0, corner]
        weights = raster.edge_functions(tri.expand(height, width, 3, 2), pixels)
        area = weights.sum(-1)
        if area.abs().max() < 1e-12:
            continue
        weights = weights / area[..., None]
        key = (weights * tri_inv_w).sum(-1)
        nearer = (weights >= 0).all(-1) & (key > best)
        best, ids = torch.where(nearer, key, best), torch.where(nearer, f, ids)
    return ids[None]


def frame(vertices, faces, colours, c2w, size, visibility=None):
    clip = raster.project(vertices, c2w, size, size, focal_from_fov(40.0, size))
    if visibility is None:
        out = raster.rasterize(clip, faces, size, size)
    else:
        screen, inv_w = raster._screen(clip[None], size, size)
        out = {k: v[0] for k, v in raster._surface_at(visibility(screen.detach(), inv_w.detach(), faces, size, size),
                                                        screen, inv_w, faces).items()}
    image = raster.antialias(raster.interpolate(colours, out, faces), out, clip, faces)
    image.sum().backward()
    return out["triangle_id"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; an icosphere of "
          f"radius 0.6 from elevation 15°, radius 2.8, 40° field of view; ms per frame (forward + backward)\n")
    print("| faces | size | rasterize (ms) | per-triangle loop (ms) | speed-up | agree |")
    print("|---|---|---|---|---|---|")
    c2w = orbit_camera(15.0, 30.0, 2.8)
    for subdivisions in (3, 4, 5):
        mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.6)
        vertices = torch.tensor(mesh.vertices, dtype=torch.float32, requires_grad=True)
        faces = torch.tensor(mesh.faces)
        colours = torch.rand(len(vertices), 3, generator=torch.Generator().manual_seed(0)).requires_grad_()
        for size in (64, 128):
            ours = seconds(lambda: frame(vertices, faces, colours, c2w, size), args.repeats)
            loop = seconds(lambda: frame(vertices, faces, colours, c2w, size, loop_visibility), max(1, args.repeats // 10))
            agree = (frame(vertices, faces, colours, c2w, size) ==
                     frame(vertices, faces, colours, c2w, size, loop_visibility)).float().mean().item()
            print(f"| {len(faces)} | {size}² | {ours * 1e3:.1f} | {loop * 1e3:.0f} | {loop / ours:.0f}x | {agree:.4f} |")


if __name__ == "__main__":
    main()
