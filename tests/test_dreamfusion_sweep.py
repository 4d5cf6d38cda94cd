"""Chapter 04's score and the script behind its notes (``scripts/dreamfusion_sweep.py``)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from minidiff3d.cameras import orbit_camera
from minidiff3d.pipelines import DreamFusion, DreamFusionConfig, orbit_r_precision
from minidiff3d.priors import load, object_captions, tiny_stable_diffusion
from minidiff3d.toyworld import DEFAULT_RADIUS, make_object, render as toy_render

spec = importlib.util.spec_from_file_location("dreamfusion_sweep",
                                              Path(__file__).resolve().parents[1] / "scripts" / "dreamfusion_sweep.py")
sweep_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep_script)

SMALL = {"render_size": 16, "n_samples": 16}


@pytest.fixture(scope="module")
def tiny_pipe():
    pipe = tiny_stable_diffusion()
    pipe.set_progress_bar_config(disable=True)
    return pipe


class ToyWorldRun:
    """Stands in for a DreamFusion run whose result is the toy world's own mug; records what was asked."""

    def __init__(self):
        self.asked = None

    def render(self, elevation, azimuth, size, shading):
        self.asked = (elevation, azimuth, size, shading)
        obj = make_object("mug", "pink", 0)
        views = [toy_render(obj, orbit_camera(float(e), float(a), DEFAULT_RADIUS), size, size)["image"]
                 for e, a in zip(elevation, azimuth)]
        return {"rgb": torch.stack(views).permute(0, 3, 1, 2)}


def test_orbit_r_precision_scores_lit_views_evenly_around_the_object():
    run, clip, candidates = ToyWorldRun(), load("toy-clip"), object_captions()
    assert orbit_r_precision(run, "a pink mug", candidates, clip) >= 0.75  # from behind, the handle is hidden
    elevation, azimuth, size, shading = run.asked
    assert elevation.tolist() == [15.0] * 8 and azimuth.tolist() == [45.0 * k for k in range(8)]
    assert (size, shading) == (64, "lambertian")
    assert orbit_r_precision(run, "a blue cube", candidates, clip) == 0.0
    with pytest.raises(ValueError, match="n_views"):
        orbit_r_precision(run, "a pink mug", candidates, clip, n_views=0)


def test_fit_to_renders_fits_the_field_to_the_toy_object(tiny_pipe):
    run = DreamFusion(tiny_pipe, "a pink mug", DreamFusionConfig(steps=60, **SMALL))
    losses = sweep_script.fit_to_renders(run, n_views=8)
    assert len(losses) == 60
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])


def test_sweep_scores_every_prompt_and_seed_and_tabulates_them(tiny_pipe, monkeypatch):
    clip = object()

    def fingerprint(run, prompt, candidates, clip_):
        """Stands in for the score: a number that tells apart runs of different seeds, prompts or lengths."""
        assert prompt == run.prompt.prompt and candidates == object_captions() and clip_ is clip
        return sum(p.double().sum().item() for p in run.renderer.parameters())

    monkeypatch.setattr(sweep_script, "orbit_r_precision", fingerprint)
    prompts = ["a red torus", "a pink mug"]
    results = sweep_script.sweep(prompts, [0, 1], {"steps": 2, **SMALL}, pipe=tiny_pipe, clip=clip)
    assert set(results) == {(p, s) for p in prompts for s in (0, 1)}
    for (prompt, seed), (score, seconds) in results.items():  # each score is that of the same run done by hand
        by_hand = DreamFusion(tiny_pipe, prompt, DreamFusionConfig(steps=2, seed=seed, **SMALL))
        by_hand.fit(show_progress=False)
        assert score == fingerprint(by_hand, prompt, object_captions(), clip) and seconds > 0
    assert len({score for score, _ in results.values()}) == 4
    rows = sweep_script.table(results, prompts, [0, 1]).splitlines()
    assert rows[0] == "| seed | torus | mug | mean |" and rows[2].startswith("| 0 |") and rows[3].startswith("| 1 |")


def test_sweep_table_by_hand():
    results = {("a red torus", 0): (1.0, 3.0), ("a pink mug", 0): (0.5, 5.0), ("a red torus", 1): (0.25, 4.0),
               ("a pink mug", 1): (0.0, 2.0)}
    rows = sweep_script.table(results, ["a red torus", "a pink mug"], [0, 1]).splitlines()
    assert rows[2:4] == ["| 0 | 1.00 | 0.50 | 0.750 |", "| 1 | 0.25 | 0.00 | 0.125 |"]
    assert rows[-1] == "mean over seeds: 0.438; slowest run 5 s"
