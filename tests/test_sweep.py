"""Chapter 04's score and the script behind the chapters' results files (``scripts/sweep.py``)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import trimesh

from minidiff3d.cameras import orbit_camera
from minidiff3d.priors import load, object_captions, tiny_stable_diffusion
from minidiff3d.systems import System, back_view, orbit_r_precision, run_config
from minidiff3d.toyworld import DEFAULT_RADIUS, make_object, render as toy_render

spec = importlib.util.spec_from_file_location("sweep", Path(__file__).resolve().parents[1] / "scripts" / "sweep.py")
sweep_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep_script)

SMALL = {"system.render_size": 16, "renderer.n_samples": 16}


@pytest.fixture(scope="module")
def tiny_pipe():
    pipe = tiny_stable_diffusion()
    pipe.set_progress_bar_config(disable=True)
    return pipe


class ToyWorldRun:
    """Stands in for a DreamFusion run whose result is the toy world's own mug, its front turned to ``facing``
    (degrees of azimuth); records what was asked."""

    def __init__(self, facing: float = 0.0):
        self.asked, self.facing = None, facing

    def render(self, elevation, azimuth, size, shading):
        self.asked = (elevation, azimuth, size, shading)
        obj = make_object("mug", "pink", 0)
        elevation, azimuth = (torch.as_tensor(x, dtype=torch.float32).reshape(-1) for x in (elevation, azimuth))
        views = [toy_render(obj, orbit_camera(float(e), float(a) - self.facing, DEFAULT_RADIUS), size, size)["image"]
                 for e, a in zip(elevation, azimuth)]
        return {"rgb": torch.stack(views).permute(0, 3, 1, 2)}


@pytest.mark.parametrize("facing", [0.0, 90.0, 225.0])
def test_the_back_view_is_opposite_the_objects_front_wherever_it_faces(facing):
    back = back_view(ToyWorldRun(facing), "a pink mug", load("toy-clip"))
    truth = ToyWorldRun().render(15.0, 180.0, 64, "lambertian")["rgb"]
    assert back.shape == (1, 3, 64, 64) and torch.allclose(back, truth, atol=1e-4)


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
    run = System.from_config(run_config("dreamfusion", "a pink mug", {"system.steps": 60, **SMALL}), tiny_pipe)
    losses = sweep_script.fit_to_renders(run, n_views=8)
    assert len(losses) == 60
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])


def test_sweep_scores_every_prompt_and_seed_and_tabulates_them(tiny_pipe, monkeypatch):
    clip = object()

    def fingerprint(run, prompt, candidates, clip_):
        """Stands in for the score: a number that tells apart runs of different seeds, prompts or lengths."""
        assert prompt == run.prompt.prompt and candidates == object_captions() and clip_ is clip
        return sum(p.double().sum().item() for p in run.geometry.parameters())

    monkeypatch.setattr(sweep_script, "orbit_r_precision", fingerprint)
    prompts = ["a red torus", "a pink mug"]
    records = sweep_script.sweep(prompts, [0, 1], {"system.steps": 2, **SMALL}, pipe=tiny_pipe, clip=clip)
    assert [(r["prompt"], r["seed"]) for r in records] == [(p, s) for s in (0, 1) for p in prompts]
    for r in records:  # each score is that of the same run done by hand
        by_hand = System.from_config(run_config("dreamfusion", r["prompt"], {"system.steps": 2, "system.seed": r["seed"],
                                                                            **SMALL}), tiny_pipe)
        by_hand.fit(show_progress=False)
        assert r["r_precision"] == fingerprint(by_hand, r["prompt"], object_captions(), clip) and r["seconds"] >= 0
        assert 0 <= r["saturation"] <= 1 and r["front"].shape == (1, 3, 64, 64)
    assert len({r["r_precision"] for r in records}) == 4
    rows = sweep_script.table(records, prompts, [0, 1]).splitlines()
    assert rows[0] == "| seed | torus | mug | mean |" and rows[2].startswith("| 0 |") and rows[3].startswith("| 1 |")


def test_sweep_writes_its_command_machine_and_date_and_refuses_a_bad_key(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_script, "load", lambda name: object())
    def fake_sweep(prompts, seeds, overrides, method, fit_renders, pipe, clip, done, on_record, eval_every):
        assert pipe is None  # the method's preset prior, loaded by sweep()
        return [dict(prompt=prompts[0], seed=seeds[0], r_precision=0.5, saturation=0.25, seconds=1.0,
                     front=torch.zeros(1, 3, 4, 4))]

    monkeypatch.setattr(sweep_script, "sweep", fake_sweep)
    monkeypatch.setattr(sweep_script, "diversity", lambda records, clip: {})
    out = tmp_path / "results.json"
    sweep_script.main(["--prompts", "a red torus", "--set", "system.steps=2", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["command"] == f"python scripts/sweep.py --prompts 'a red torus' --set system.steps=2 --out {out}"  # runnable as it stands
    assert saved["method"] == "dreamfusion" and saved["overrides"] == {"system.steps": 2}
    assert saved["machine"] and saved["date"] and saved["version"]
    assert saved["records"] == [dict(prompt="a red torus", seed=0, r_precision=0.5, saturation=0.25, seconds=1.0)]
    assert saved["complete"] is True
    with pytest.raises(SystemExit, match="system.stepz: unknown key"):
        sweep_script.main(["--set", "system.stepz=2"])
    with pytest.raises(SystemExit, match="--set system.seed: set by the sweep itself"):
        sweep_script.main(["--set", "system.seed=2"])


def test_a_coarse_to_fine_sweep_records_both_stages_a_curve_and_the_mesh(tiny_pipe, monkeypatch):
    monkeypatch.setattr(sweep_script, "orbit_r_precision", lambda run, prompt, candidates, clip: float(run.step_count))
    overrides = {"system.steps": 3, "fine.steps": 3, "fine.render_size": 16, "fine.geometry.resolution": 10,
                 "geometry.blob_density": 10.0, **SMALL}
    [record] = sweep_script.sweep(["a red torus"], [0], overrides, "magic3d", pipe=tiny_pipe, clip=object(), eval_every=2)
    assert record["r_precision"] == 6.0 and record["coarse"]["r_precision"] == 3.0  # scored after each stage
    assert [step for step, _, _ in record["curve"]] == [2, 4, 6] and [r for _, _, r in record["curve"]] == [2.0, 4.0, 6.0]
    assert 0 < record["coarse"]["seconds"] < record["seconds"]
    assert record["mesh"]["faces"] > 0 and record["mesh"]["pieces"] <= record["mesh"]["raw_pieces"]
    assert record["sharpness"] > 0 and "front" not in sweep_script.without_fronts(record)["coarse"]


def test_mesh_stats_drop_specks_but_count_them():
    class Run:
        def export_mesh(self, min_piece):
            assert min_piece == 0.0
            speck = trimesh.creation.icosphere(0, 0.05)  # 20 faces: under 5 % of 1280
            speck.apply_translation([0.8, 0, 0])
            return trimesh.util.concatenate([trimesh.creation.icosphere(3, 0.5), speck])

    assert sweep_script.mesh_stats(Run()) == dict(faces=1280, pieces=1, raw_pieces=2, watertight=True)


def test_sweep_table_by_hand():
    records = [dict(prompt=p, seed=s, r_precision=r, saturation=sat, seconds=t) for p, s, r, sat, t in (
        ("a red torus", 0, 1.0, 0.2, 3.0), ("a pink mug", 0, 0.5, 0.4, 5.0), ("a red torus", 1, 0.25, 0.4, 4.0),
        ("a pink mug", 1, 0.0, 0.6, 2.0))]
    rows = sweep_script.table(records, ["a red torus", "a pink mug"], [0, 1], {"a red torus": 0.125}).splitlines()
    assert rows[2:4] == ["| 0 | 1.00 | 0.50 | 0.750 |", "| 1 | 0.25 | 0.00 | 0.125 |"]
    assert rows[5] == "mean over seeds: 0.438; slowest run 5 s"
    assert rows[-2:] == ["| a red torus | 0.300 | 0.125 |", "| a pink mug | 0.500 | – |"]


def test_an_interrupted_sweep_resumes_to_the_uninterrupted_result(tiny_pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_script, "load", lambda name: tiny_pipe if name == "toy-sd" else object())
    monkeypatch.setattr(sweep_script, "orbit_r_precision",
                        lambda run, prompt, candidates, clip: sum(p.double().sum().item() for p in run.geometry.parameters()))
    # Stands in for CLIP diversity: a number that depends on every front view of the prompt.
    monkeypatch.setattr(sweep_script, "diversity", lambda records, clip: {
        p: round(sum(r["front"].double().sum().item() * (1 + r["seed"]) for r in records if r["prompt"] == p), 6)
        for p in {r["prompt"] for r in records}})
    args = ["--prompts", "a red torus", "a pink mug", "--seeds", "0", "1", "--set", "system.steps=2",
            "system.render_size=16", "renderer.n_samples=16"]
    whole, part = tmp_path / "whole.json", tmp_path / "part.json"
    sweep_script.main([*args, "--out", str(whole)])

    real_build, calls = sweep_script.build, []

    def build_until_the_third(*a, **k):
        calls.append(a)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_build(*a, **k)

    monkeypatch.setattr(sweep_script, "build", build_until_the_third)
    with pytest.raises(KeyboardInterrupt):
        sweep_script.main([*args, "--out", str(part)])
    stopped = json.loads(part.read_text())
    assert stopped["complete"] is False and len(stopped["records"]) == 2
    monkeypatch.setattr(sweep_script, "build", real_build)
    sweep_script.main([*args, "--out", str(part), "--resume"])
    resumed, expected = json.loads(part.read_text()), json.loads(whole.read_text())
    assert resumed["complete"] is True and resumed["diversity"] == expected["diversity"]
    strip = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert strip(resumed["records"]) == strip(expected["records"])
    with pytest.raises(SystemExit, match="has overrides="):
        sweep_script.main([*args[:-1], "renderer.n_samples=8", "--out", str(part), "--resume"])
    with pytest.raises(SystemExit, match="--resume: needs --out"):
        sweep_script.main([*args, "--resume"])


def test_janus_sweep_runs_both_prompt_styles_for_sds_and_the_plain_prompt_for_mvdream(tiny_pipe, monkeypatch):
    from minidiff3d.priors.toy_mvdream import tiny_mvdream

    asked = []
    monkeypatch.setattr(sweep_script, "janus_rate", lambda back, prompt, clip: float(back.mean() > 0.5))
    monkeypatch.setattr(sweep_script, "back_view", lambda run, prompt, clip, elevation: run.render(elevation, 180.0)["rgb"])
    monkeypatch.setattr(sweep_script, "orbit_r_precision",
                        lambda run, prompt, candidates, clip: asked.append(run.run_config.prompt.view_dependent) or 0.5)
    records = sweep_script.janus_sweep(["a pink mug"], [0, 1], {"system.steps": 2, **SMALL},
                                       ("dreamfusion", "mvdream"), {"dreamfusion": tiny_pipe, "mvdream": tiny_mvdream()},
                                       clip=object())
    assert [(r["method"], r["view_dependent"], r["seed"]) for r in records] == [
        ("dreamfusion", True, 0), ("dreamfusion", True, 1), ("dreamfusion", False, 0), ("dreamfusion", False, 1),
        ("mvdream", False, 0), ("mvdream", False, 1)]
    assert asked == [True, True, False, False, False, False] and all(r["seconds"] >= 0 for r in records)
    rows = sweep_script.janus_table(records).splitlines()
    assert rows[2].startswith("| dreamfusion, view prompts | a pink mug |") and rows[4].startswith("| mvdream | a pink mug |")


def test_janus_table_by_hand():
    records = [dict(method=m, prompt=p, seed=s, view_dependent=v, janus=j, r_precision=r) for m, p, s, v, j, r in (
        ("dreamfusion", "a pink mug", 0, True, True, 1.0), ("dreamfusion", "a pink mug", 1, True, False, 0.5),
        ("mvdream", "a pink mug", 0, False, False, 0.25), ("mvdream", "a pink mug", 1, False, False, 0.75))]
    assert sweep_script.janus_table(records).splitlines()[2:] == [
        "| dreamfusion, view prompts | a pink mug | 1 of 2 | 0.750 |", "| mvdream | a pink mug | 0 of 2 | 0.500 |"]


def test_janus_sweep_file_names_its_methods_and_is_complete_only_at_the_end(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_script, "load", lambda name: object())
    written = []

    def fake_sweep(prompts, seeds, overrides, methods, pipes, clip, on_record, done):
        assert pipes == {}  # each method on its preset's prior
        records = [dict(method=m, prompt=prompts[0], seed=0, view_dependent=False, janus=False, r_precision=1.0,
                        seconds=1.0) for m in methods]
        written.append(list(done))
        on_record(records[:1])
        written.append(json.loads(out.read_text()))
        return records

    monkeypatch.setattr(sweep_script, "janus_sweep", fake_sweep)
    out = tmp_path / "janus.json"
    sweep_script.main(["--janus", "--methods", "dreamfusion", "mvdream", "--prompts", "a pink mug", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert written[0] == [] and written[1]["complete"] is False and len(written[1]["records"]) == 1
    assert saved["complete"] is True and saved["method"] == ["dreamfusion", "mvdream"] and len(saved["records"]) == 2
    sweep_script.main(["--janus", "--methods", "dreamfusion", "mvdream", "--prompts", "a pink mug", "--out", str(out),
                       "--resume"])
    assert written[2] == saved["records"]  # a resumed sweep is handed the runs already in the file
    with pytest.raises(SystemExit, match="--resume: .* has method="):
        sweep_script.main(["--janus", "--methods", "mvdream", "--out", str(out), "--resume"])
    with pytest.raises(SystemExit, match="--methods: only with --janus"):
        sweep_script.main(["--methods", "mvdream"])
    with pytest.raises(SystemExit, match="takes an input image"):
        sweep_script.main(["--janus", "--methods", "zero123"])
    for flag in (["--fit-renders"], ["--eval-every", "5"]):  # parsed, and then nothing would read them
        with pytest.raises(SystemExit, match=f"{flag[0]}: only without --janus"):
            sweep_script.main(["--janus", *flag])


def test_a_score_sweep_runs_on_its_methods_prior(monkeypatch):
    asked = []
    monkeypatch.setattr(sweep_script, "load", lambda name: asked.append(name) or object())
    for method in ("dreamfusion", "mvdream"):
        assert sweep_script.sweep([], [0], {}, method, clip=object()) == []
    assert asked == ["toy-sd", "toy-mvdream"]


def test_mvdream_unet_puts_a_saved_unet_in_place_of_the_shipped_one(tmp_path, monkeypatch):
    from minidiff3d.priors.toy_mvdream import tiny_mvdream
    trained = tiny_mvdream(seed=3)
    trained.unet.save_pretrained(tmp_path / "run" / "unet")
    monkeypatch.setattr(sweep_script, "load", lambda name: tiny_stable_diffusion() if name == "toy-sd" else object())
    handed = {}
    monkeypatch.setattr(sweep_script, "janus_sweep", lambda *args, pipes, **kwargs: handed.update(pipes) or [])
    out = tmp_path / "janus.json"
    sweep_script.main(["--janus", "--methods", "mvdream", "--mvdream-unet", str(tmp_path / "run"), "--out", str(out)])
    assert json.loads(out.read_text())["mvdream_unet"] == str(tmp_path / "run")
    with pytest.raises(SystemExit, match="--resume: .* has mvdream_unet="):  # a resumed sweep keeps its prior
        sweep_script.main(["--janus", "--methods", "mvdream", "--out", str(out), "--resume"])
    loaded = handed["mvdream"].unet.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in trained.unet.state_dict().items())
    assert handed["mvdream"].unet.config.class_embed_type == "projection"  # the camera MLP came along
    with pytest.raises(SystemExit, match="--mvdream-unet: only with the method mvdream"):
        sweep_script.main(["--janus", "--methods", "dreamfusion", "--mvdream-unet", str(tmp_path / "run")])
    with pytest.raises(SystemExit, match="--mvdream-unet: expected a folder holding unet/"):
        sweep_script.main(["--janus", "--methods", "mvdream", "--mvdream-unet", str(tmp_path)])


def test_a_janus_sweep_skips_the_runs_it_is_handed(tiny_pipe, monkeypatch):
    monkeypatch.setattr(sweep_script, "janus_rate", lambda back, prompt, clip: 0.0)
    monkeypatch.setattr(sweep_script, "orbit_r_precision", lambda run, prompt, candidates, clip: 0.5)
    monkeypatch.setattr(sweep_script, "back_view", lambda run, prompt, clip, elevation: run.render(elevation, 180.0)["rgb"])
    done = [dict(method="dreamfusion", prompt="a pink mug", seed=0, view_dependent=True, janus=True, r_precision=1.0,
                 seconds=9.0)]
    records = sweep_script.janus_sweep(["a pink mug"], [0], {"system.steps": 2, **SMALL}, ("dreamfusion",),
                                       {"dreamfusion": tiny_pipe}, clip=object(), done=done)
    assert records[0] == done[0] and [(r["view_dependent"], r["janus"]) for r in records[1:]] == [(False, False)]


def test_a_dreamgaussian_sweep_scores_its_textured_mesh_too(tiny_pipe, monkeypatch):
    monkeypatch.setattr(sweep_script, "orbit_r_precision", lambda run, prompt, candidates, clip: 0.5)
    seen = []
    monkeypatch.setattr(sweep_script, "r_precision", lambda views, prompts, candidates, clip: seen.append(views.shape) or 1.0)
    overrides = {"system.steps": 2, "system.render_size": 16, "geometry.count": 300, "geometry.scale": 0.1,
                 "geometry.opacity": 0.5, "texture.resolution": 24, "texture.azimuths": 4, "texture.elevations": [15.0],
                 "texture.render_size": 16, "texture.steps": 5, "texture.level": 0.3}
    [record] = sweep_script.sweep(["a red torus"], [0], overrides, "dreamgaussian", pipe=tiny_pipe, clip=object())
    assert record["r_precision"] == 0.5 and record["mesh_r_precision"] == 1.0 and seen == [(8, 3, 64, 64)]
    assert record["mesh"]["pieces"] == 1 and record["mesh"]["watertight"]
