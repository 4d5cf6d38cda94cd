"""Static pictures of 3-D figures, and notebook outputs that a viewer without a kernel can show."""

import io

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient
from PIL import Image

from minidiff3d import plotting, toyworld


def picture(fig) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(plotting.static_picture(fig))).convert("RGB")).astype(int)


def test_static_picture_has_the_figure_size_and_draws_its_traces():
    empty = plotting.scene_figure(height=300)
    mesh = plotting.plot_mesh(toyworld.object_mesh(toyworld.make_object("cube", "red"), 24), fig=plotting.scene_figure(height=300), color="red")
    blank, drawn = picture(empty), picture(mesh)
    assert blank.shape == drawn.shape == (300, 700, 3)
    reddish = lambda rgb: ((rgb[..., 0] > 120) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).sum()
    assert reddish(blank) == 0 and reddish(drawn) > 300


def test_static_picture_puts_each_gallery_scene_in_its_panel():
    cube = plotting.mesh_trace(toyworld.object_mesh(toyworld.make_object("cube", "blue"), 24), color="blue")
    rgb = picture(plotting.gallery([None, cube, None], ["a", "b", "c"], cols=3))
    blue = (rgb[..., 2] > 120) & (rgb[..., 0] < 80)
    columns = np.nonzero(blue.any(0))[0]
    width = rgb.shape[1]
    assert width / 3 < columns.min() and columns.max() < 2 * width / 3  # only the middle panel


def test_static_picture_follows_the_camera():
    """A cluster on +x, seen from opposite azimuths, lands mirrored about the panel's centre."""
    cluster = plotting.points_trace(torch.tensor([[2.5, 0.0, 0.0]]) + 0.05 * torch.randn(50, 3), color="red", size=6)
    fig = plotting.gallery([cluster], ["+x"], cols=1, extent=3.0)
    columns = []
    for eye in (dict(x=1.4, y=1.0, z=0.8), dict(x=-1.4, y=-1.0, z=0.8)):
        fig.update_layout(scene_camera_eye=eye)
        rgb = picture(fig)
        red = (rgb[..., 0] > 150) & (rgb[..., 1] < 80)
        columns.append(np.nonzero(red.any(0))[0].mean() / rgb.shape[1] - 0.5)
    assert abs(columns[0]) > 0.03 and abs(columns[0] + columns[1]) < 0.01


def test_picture_argument_is_checked():
    with pytest.raises(TypeError, match="picture"):
        plotting._png("not a picture")


def test_notebook_outputs_carry_pictures_and_the_final_progress(monkeypatch, tmp_path):
    for flag in ("MINIDIFF3D_QUICK", "CI"):  # bars are silent in quick mode and on CI
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setenv("PLOTLY_RENDERER", "plotly_mimetype")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in (
        "import torch, ipywidgets\nfrom minidiff3d import plotting, progress",
        "plotting.show(plotting.plot_points(torch.randn(20, 3)))",
        "plotting.show_widget(ipywidgets.IntSlider(), plotting.plot_points(torch.randn(20, 3)))",
        "for _ in progress(range(40), desc='loop', mininterval=0):\n    pass",
    )])
    NotebookClient(notebook, timeout=120, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    figure, widget, bar = (cell.outputs for cell in notebook.cells[1:])
    assert set(figure[0]["data"]) >= {"application/vnd.plotly.v1+json", "image/png"}
    assert set(widget[0]["data"]) >= {"application/vnd.jupyter.widget-view+json", "image/png"}
    assert len(bar) == 1 and "40/40" in bar[0]["data"]["text/plain"]
    from tests.test_stored_notebooks import static_defects

    assert static_defects(notebook) == []


def test_to_png_takes_an_image_or_a_figure():
    import matplotlib.pyplot as plt

    image = torch.zeros(5, 7, 3)
    image[..., 0] = 1.0
    decoded = np.asarray(Image.open(io.BytesIO(plotting.to_png(image))))
    assert decoded.shape == (5, 7, 3) and (decoded[..., 0] == 255).all() and (decoded[..., 1] == 0).all()
    figure, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([0, 1], [0, 1])
    picture = Image.open(io.BytesIO(plotting.to_png(figure)))
    assert picture.format == "PNG" and picture.width > picture.height
