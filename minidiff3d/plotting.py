"""Figures for the course: image grids (matplotlib) and 3-D scenes (plotly ``go.Figure``).

3-D helpers add traces to a figure and return it, so they chain:
``plot_mesh(mesh, fig=plot_cameras(c2ws, 64, 64, focal))``. Scenes are z-up, as the world is.
"""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import torch

from .cameras import frustum_corners
from .images import save_gif, to_channels_last  # noqa: F401  (save_gif: the turntable's file, here for notebooks)
from .validation import check_positive_int, check_tensor


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def image_grid(images, titles=None, ncols: int | None = None, size: float = 1.6):
    """Show ``images [N,H,W,3]`` (or ``[N,H,W]``) in [0,1] as a grid; returns the matplotlib figure.

    Channels last, as matplotlib shows them: a model's ``[N,3,H,W]`` goes through ``images.to_channels_last``."""
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
    """PNG bytes of ``image [H,W,3]`` in [0,1], or of a matplotlib or plotly figure, e.g. for an ``ipywidgets.Image``."""
    from PIL import Image

    if not isinstance(image, (torch.Tensor, np.ndarray)):
        return _png(image)

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
    """Frames ``[F,3,H,W]`` of ``render_fn(c2w [4,4]) -> [3,H,W]`` from orbit cameras evenly spaced in azimuth,
    starting at the front (azimuth 0). A renderer of photographs (``[H,W,3]``) goes through
    ``images.to_channels_first``."""
    from .cameras import orbit_camera

    frames = [render_fn(c2w) for c2w in orbit_camera(elevation, torch.arange(check_positive_int("n_frames", n_frames))
                                                     * 360.0 / n_frames, radius)]
    return torch.stack([check_tensor("render_fn(c2w)", frame, shape=[3, None, None]) for frame in frames])



# Static pictures. A stored notebook is often read without a kernel or JavaScript (GitHub,
# nbviewer): plotly's JSON and live widgets then show nothing, so every such output carries a
# PNG beside it. The PNG is drawn by matplotlib from the same figure rather than by plotly's
# kaleido, which needs a Chrome install that neither CI nor a laptop is guaranteed to have.

def _mpl_colour(colour, default: str = "lightgray"):
    """A plotly colour ('red', '#ff0000', 'rgb(255,0,0)') as something matplotlib takes."""
    if colour is None:
        return default
    if isinstance(colour, str) and colour.startswith("rgb"):
        values = [float(v) for v in colour[colour.index("(") + 1:-1].split(",")]
        return tuple(v / 255 for v in values[:3])
    return colour


def _draw_trace(ax, trace, light: np.ndarray) -> None:
    x, y, z = (np.asarray(getattr(trace, k), dtype=float) for k in "xyz")
    if trace.type == "scatter3d":
        mode = trace.mode or "markers"
        if "lines" in mode:
            ax.plot(x, y, z, color=_mpl_colour(trace.line.color, "C0"), linewidth=(trace.line.width or 2) / 2)
        if "markers" in mode:
            colour = trace.marker.color
            if colour is None or isinstance(colour, str):
                style = dict(color=_mpl_colour(colour, "C0"))
            elif np.issubdtype(np.asarray(colour).dtype, np.number):  # values to colour-map
                style = dict(c=np.asarray(colour), cmap="viridis")
            else:  # one plotly colour per point
                style = dict(color=[_mpl_colour(str(c)) for c in colour])
            ax.scatter(x, y, z, s=(trace.marker.size or 3) ** 2 / 2, depthshade=False, linewidths=0, **style)
    elif trace.type == "mesh3d":
        from matplotlib.colors import to_rgb
        from mpl_toolkits.mplot3d.art3d import Poly3DCollection

        vertices, faces = np.stack([x, y, z], 1), np.stack([trace.i, trace.j, trace.k], 1).astype(int)
        triangles = vertices[faces]
        if trace.vertexcolor is not None:
            rgb = np.array([to_rgb(_mpl_colour(c)) for c in trace.vertexcolor])[faces].mean(1)
        else:
            rgb = np.tile(to_rgb(_mpl_colour(trace.color)), (len(faces), 1))
        normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
        normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
        shade = 0.5 + 0.5 * np.abs(normals @ light)  # two-sided: winding differs between meshes
        ax.add_collection3d(Poly3DCollection(triangles, facecolors=np.clip(rgb * shade[:, None], 0, 1),
                                             alpha=trace.opacity if trace.opacity is not None else 1.0, linewidths=0))


def static_picture(fig: go.Figure, dpi: int = 80) -> bytes:
    """PNG bytes of a plotly 3-D figure (``Scatter3d`` and ``Mesh3d`` traces, one or many scenes), drawn by matplotlib.

    Each scene keeps its place on the page, its axis ranges and its camera's direction.
    """
    from matplotlib.figure import Figure  # not pyplot: no backend to switch, no figure left open in a notebook
    import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3-D projection)

    layout = fig.layout
    width, height = layout.width or 700, layout.height or 450
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    margin = layout.margin
    left, right, top, bottom = (v if v is not None else 80 for v in (margin.l, margin.r, margin.t, margin.b))

    def to_figure(x: float, y: float) -> tuple[float, float]:  # plotly's paper coordinates sit inside the margins
        return (left + x * (width - left - right)) / width, (bottom + y * (height - top - bottom)) / height
    scene_names = sorted({t.scene or "scene" for t in fig.data} | {k for k in layout.to_plotly_json() if k.startswith("scene")},
                         key=lambda name: int(name[5:] or 1))
    for name in scene_names:
        scene = layout[name]
        dx, dy = scene.domain.x or (0, 1), scene.domain.y or (0, 1)
        (x0, y0), (x1, y1) = to_figure(dx[0], dy[0]), to_figure(dx[1], dy[1])
        ax = figure.add_axes((x0, y0, x1 - x0, y1 - y0), projection="3d")
        eye = scene.camera.eye
        eye = np.array([eye.x, eye.y, eye.z]) if eye.x is not None else np.array([1.25, 1.25, 1.25])
        ax.view_init(elev=np.degrees(np.arctan2(eye[2], np.hypot(eye[0], eye[1]))), azim=np.degrees(np.arctan2(eye[1], eye[0])))
        light = eye / np.linalg.norm(eye)
        for trace in fig.data:
            if (trace.scene or "scene") == name:
                _draw_trace(ax, trace, light)
        for axis in "xyz":
            limits = scene[f"{axis}axis"].range
            if limits is not None:
                getattr(ax, f"set_{axis}lim")(limits)
        ax.set_box_aspect((1, 1, 1))
        if scene.xaxis.visible is False:
            ax.set_axis_off()
        else:
            ax.tick_params(labelsize=6)
    for note in layout.annotations:  # make_subplots' titles
        figure.text(*to_figure(note.x, note.y), note.text, ha="center", va="bottom", fontsize=8)
    if layout.title.text:
        figure.suptitle(layout.title.text, fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _png(picture) -> bytes:
    """PNG bytes of PNG bytes, a plotly or matplotlib figure, or a list of them side by side."""
    from plotly.basedatatypes import BaseFigure

    if isinstance(picture, (bytes, memoryview)):  # an ipywidgets.Image's value is a memoryview
        return bytes(picture)
    if isinstance(picture, BaseFigure):
        return static_picture(picture)
    if isinstance(picture, (list, tuple)):
        from PIL import Image

        parts = [Image.open(io.BytesIO(_png(p))).convert("RGB") for p in picture]
        height = max(p.height for p in parts)  # small renders are enlarged, pixels kept sharp
        parts = [p.resize((round(p.width * height / p.height), height), Image.NEAREST) for p in parts]
        row = Image.new("RGB", (sum(p.width for p in parts), height), "white")
        for x, part in zip(np.cumsum([0] + [p.width for p in parts[:-1]]), parts):
            row.paste(part, (int(x), 0))
        buffer = io.BytesIO()
        row.save(buffer, format="PNG")
        return buffer.getvalue()
    if hasattr(picture, "savefig"):  # a matplotlib figure
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        picture.savefig(buffer, format="png", bbox_inches="tight")
        plt.close(picture)
        return buffer.getvalue()
    raise TypeError(f"picture: expected PNG bytes, a plotly or matplotlib figure, or a list of them, got {type(picture).__name__}")


def _display_with_picture(bundle: dict, picture) -> None:
    import base64

    from IPython.display import display

    display({**bundle, "image/png": base64.b64encode(_png(picture)).decode()}, raw=True)


def show(fig: go.Figure) -> None:
    """Display a plotly figure in a notebook with its static picture in the same output.

    Live front ends draw the interactive figure; a static viewer falls back to the PNG.
    """
    _display_with_picture({"text/plain": f"<3-D figure: {len(fig.data)} traces>", **fig._repr_mimebundle_()}, fig)


def show_widget(widget, picture) -> None:
    """Display an ipywidgets control with a static picture of its initial state in the same output.

    ``picture``: PNG bytes, a plotly or matplotlib figure, or a list of them drawn side by side. JupyterLab draws the live
    widget; a viewer without a kernel shows the picture.
    """
    _display_with_picture(widget._repr_mimebundle_(), picture)
