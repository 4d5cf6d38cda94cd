"""Figures for the course: image grids (matplotlib) and 3-D scenes (plotly ``go.Figure``).

3-D helpers add traces to a figure and return it, so they chain:
``plot_mesh(mesh, fig=plot_cameras(c2ws, 64, 64, focal))``. Scenes are z-up, as the world is.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import torch

from .cameras import frustum_corners


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def image_grid(images, titles=None, ncols: int | None = None, size: float = 1.6):
    """Show ``images [N,H,W,3]`` (or ``[N,H,W]``) in [0,1] as a grid; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    images = _np(images)
    n = len(images)
    ncols = ncols or min(n, 8)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 * nrows if titles else 0)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, image) in enumerate(zip(axes.flat, images)):
        ax.imshow(np.clip(image, 0, 1), cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def scene_figure(title: str | None = None, extent: float = 3.2, height: int = 500) -> go.Figure:
    """An empty 3-D figure with equal axes over [-extent, extent]^3, viewed from the front-right, z up."""
    axis = dict(range=[-extent, extent], zeroline=False)
    return go.Figure(
        layout=go.Layout(
            title=title,
            height=height,
            margin=dict(l=0, r=0, t=40 if title else 0, b=0),
            scene=dict(
                xaxis=axis, yaxis=axis, zaxis=axis, aspectmode="cube",
                camera=dict(up=dict(x=0, y=0, z=1), eye=dict(x=1.4, y=1.0, z=0.8)),
            ),
        )
    )


def plot_axes(fig: go.Figure | None = None, length: float = 1.0) -> go.Figure:
    """World axes: x red, y green, z blue."""
    fig = fig or scene_figure()
    for k, colour in enumerate(("red", "green", "blue")):
        end = np.zeros(3)
        end[k] = length
        fig.add_trace(go.Scatter3d(x=[0, end[0]], y=[0, end[1]], z=[0, end[2]], mode="lines", line=dict(color=colour, width=6),
                                   name="xyz"[k], showlegend=False))
    return fig


def camera_traces(c2w, height: int, width: int, focal: float, depth: float = 0.5, color: str = "black",
                  name: str = "camera") -> list[go.Scatter3d]:
    """Two traces for one camera ``[4,4]``: its frustum, and the top edge of its image drawn thick."""
    corners = _np(frustum_corners(torch.as_tensor(c2w, dtype=torch.float32), height, width, focal, depth))
    centre = _np(torch.as_tensor(c2w)[:3, 3])
    # centre->corner edges, then the image rectangle
    path = np.array([centre, corners[0], centre, corners[1], centre, corners[2], centre, corners[3], corners[0],
                     corners[1], corners[2], corners[3], corners[0]])
    return [
        go.Scatter3d(x=path[:, 0], y=path[:, 1], z=path[:, 2], mode="lines", line=dict(color=color, width=3), name=name,
                     showlegend=False),
        go.Scatter3d(x=corners[:2, 0], y=corners[:2, 1], z=corners[:2, 2], mode="lines", line=dict(color=color, width=9),
                     showlegend=False, hoverinfo="skip"),
    ]


def plot_cameras(c2ws, height: int, width: int, focal: float, fig: go.Figure | None = None, depth: float = 0.5,
                 color: str = "black") -> go.Figure:
    """Camera frustums for ``c2ws [N,4,4]`` (or one ``[4,4]``); the image's top edge is drawn thick."""
    fig = fig or scene_figure()
    for i, c2w in enumerate(torch.as_tensor(c2ws, dtype=torch.float32).reshape(-1, 4, 4)):
        fig.add_traces(camera_traces(c2w, height, width, focal, depth, color, name=f"camera {i}"))
    return fig


def ray_trace(origins, directions, length: float = 3.0, color: str = "orange") -> go.Scatter3d:
    """Rays ``[...,3]`` as segments of ``length``, in one trace."""
    o, d = _np(origins).reshape(-1, 3), _np(directions).reshape(-1, 3)
    ends = o + length * d / np.linalg.norm(d, axis=-1, keepdims=True)
    segments = np.stack([o, ends, np.full_like(o, np.nan)], 1).reshape(-1, 3)  # NaN breaks the line between rays
    return go.Scatter3d(x=segments[:, 0], y=segments[:, 1], z=segments[:, 2], mode="lines",
                        line=dict(color=color, width=2), name="rays", showlegend=False)


def plot_rays(origins, directions, length: float = 3.0, fig: go.Figure | None = None, color: str = "orange") -> go.Figure:
    fig = fig or scene_figure()
    fig.add_trace(ray_trace(origins, directions, length, color))
    return fig


def to_png(image) -> bytes:
    """PNG bytes of ``image [H,W,3]`` in [0,1], e.g. for an ``ipywidgets.Image``."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((np.clip(_np(image), 0, 1) * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def points_trace(points, color=None, size: float = 2.0, name: str = "points") -> go.Scatter3d:
    """A plotly trace of a point cloud ``[N,3]``; ``color`` is one colour or per-point values."""
    p = _np(points).reshape(-1, 3).round(4)  # 4 decimals keep stored figures small
    return go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", marker=dict(size=size, color=color),
                        name=name, showlegend=False)


def mesh_trace(mesh, color: str | None = None, opacity: float = 1.0, name: str = "mesh") -> go.Mesh3d:
    """A plotly trace of a ``trimesh.Trimesh``, in its vertex colours unless ``color`` is given."""
    v, f = np.asarray(mesh.vertices).round(4), np.asarray(mesh.faces)
    vertex_colors = None
    if color is None and mesh.visual.kind == "vertex":
        vertex_colors = [f"rgb({r},{g},{b})" for r, g, b, _ in np.asarray(mesh.visual.vertex_colors)]
    return go.Mesh3d(x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2], color=color or "lightgray",
                     vertexcolor=vertex_colors, opacity=opacity, name=name, flatshading=False,
                     lighting=dict(ambient=0.5, diffuse=0.7), showlegend=False)


def plot_points(points, fig: go.Figure | None = None, color=None, size: float = 2.0, name: str = "points") -> go.Figure:
    """A point cloud ``[N,3]`` in ``fig`` (a new scene by default)."""
    fig = fig or scene_figure()
    fig.add_trace(points_trace(points, color, size, name))
    return fig


def plot_mesh(mesh, fig: go.Figure | None = None, color: str | None = None, opacity: float = 1.0, name: str = "mesh") -> go.Figure:
    """A ``trimesh.Trimesh`` in ``fig`` (a new scene by default)."""
    fig = fig or scene_figure()
    fig.add_trace(mesh_trace(mesh, color, opacity, name))
    return fig


def gallery(traces, titles, cols: int = 5, extent: float = 1.0, row_height: int = 260, title: str | None = None) -> go.Figure:
    """One 3-D scene per trace (``points_trace``, ``mesh_trace``, or ``None`` for an empty panel), on shared [-extent, extent] axes."""
    traces, titles = list(traces), list(titles)
    if len(traces) != len(titles):
        raise ValueError(f"titles: expected one per trace ({len(traces)}), got {len(titles)}")
    rows = -(-len(traces) // cols)
    fig = make_subplots(rows=rows, cols=cols, specs=[[{"type": "scene"}] * cols] * rows, subplot_titles=titles,
                        horizontal_spacing=0.01, vertical_spacing=0.04)
    for i, trace in enumerate(traces):
        if trace is not None:
            fig.add_trace(trace, row=i // cols + 1, col=i % cols + 1)
    axis = dict(range=[-extent, extent], visible=False)
    fig.update_scenes(aspectmode="cube", xaxis=axis, yaxis=axis, zaxis=axis)
    fig.update_layout(height=rows * row_height + 40, margin=dict(l=0, r=0, t=40, b=0), title=title)
    return fig


def turntable(render_fn, n_frames: int = 24, elevation: float = 20.0, radius: float = 2.8) -> torch.Tensor:
    """Frames ``[F,H,W,3]`` of ``render_fn(c2w) -> [H,W,3]`` from orbit cameras evenly spaced in azimuth."""
    from .cameras import orbit_camera

    return torch.stack([render_fn(c2w) for c2w in orbit_camera(elevation, torch.arange(n_frames) * 360.0 / n_frames, radius)])


def save_gif(frames, path, fps: int = 12, scale: int = 1):
    """Write frames ``[F,H,W,3]`` in [0,1] as a looping GIF, each pixel repeated ``scale`` times; returns the path."""
    from pathlib import Path

    from PIL import Image

    array = (np.clip(_np(frames), 0, 1) * 255).round().astype(np.uint8).repeat(scale, 1).repeat(scale, 2)
    images = [Image.fromarray(frame) for frame in array]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return Path(path)
