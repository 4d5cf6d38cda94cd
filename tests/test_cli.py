"""``minidiff3d generate / methods / doctor`` as a user runs them, on a tiny pipeline saved and reloaded offline."""

import json
import signal
import subprocess
import sys

import pytest
import torch
import trimesh
from PIL import Image

from minidiff3d import cli
from minidiff3d.priors import tiny_stable_diffusion
from minidiff3d.systems import System

SMALL = ["system.steps=4", "system.render_size=16", "renderer.n_samples=16", "geometry.blob_density=10"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_sd")
    tiny_stable_diffusion().save_pretrained(folder)
    return str(folder)


def generate(folder, out, *more, prompt="a red duck"):
    return cli.main(["generate", *([prompt] if prompt else []), "--out", str(out), "--pretrained", folder,
                     "--device", "cpu", "--set", *SMALL, *more])


def weights(out):
    return torch.load(out / "checkpoint.pt", weights_only=False)["geometry"]


@pytest.fixture(scope="module")
def first_run(tiny_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "red-duck"
    assert generate(tiny_folder, out, "--seed", "3") == 0
    return out


def test_generate_writes_a_mesh_a_turntable_and_a_record(first_run):
    record = json.loads((first_run / "run.json").read_text())
    assert record["status"] == "complete" and record["steps_done"] == 4 and record["seed"] == 3
    assert record["config"]["method"] == "dreamfusion" and record["config"]["prompt"]["text"] == "a red duck"
    assert record["config"]["system"]["steps"] == 4 and record["config"]["guidance"]["guidance_scale"] == 7.5
    assert record["version"] and record["machine"] and record["started"] and record["seconds"] > 0
    assert 0.0 <= record["r_precision"] <= 1.0  # "a red duck" is a toy caption, so toy CLIP can rank it
    mesh = trimesh.load(first_run / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0
    assert Image.open(first_run / "turntable.gif").n_frames == 24
    assert sorted(record["files"]) == ["checkpoint.pt", "mesh.glb", "run.json", "turntable.gif"]


def test_a_run_json_reproduces_the_run(first_run, tiny_folder, tmp_path):
    again = tmp_path / "again"
    assert cli.main(["generate", "--config", str(first_run / "run.json"), "--out", str(again),
                     "--pretrained", tiny_folder, "--device", "cpu"]) == 0
    first, second = (json.loads((d / "run.json").read_text()) for d in (first_run, again))
    assert second["config"] == first["config"] and second["r_precision"] == first["r_precision"]
    assert all(torch.equal(weights(first_run)[k], weights(again)[k]) for k in weights(first_run))


def test_an_earlier_run_is_not_overwritten_without_asking(first_run, tiny_folder, capsys):
    before = (first_run / "run.json").read_text()
    assert generate(tiny_folder, first_run) == 2
    assert "holds an earlier run (run.json); pass --overwrite" in capsys.readouterr().err
    assert (first_run / "run.json").read_text() == before


def test_overwrite_leaves_none_of_the_earlier_runs_files(tiny_folder, tmp_path, monkeypatch):
    out = tmp_path / "over"
    assert generate(tiny_folder, out) == 0
    (out / "mesh.glb").write_bytes(b"an earlier run's mesh")

    def no_surface(self, path=None, *args, **kwargs):
        raise ValueError("no surface at this level")

    monkeypatch.setattr(System, "export_mesh", no_surface)
    assert generate(tiny_folder, out, "--overwrite") == 0
    record = json.loads((out / "run.json").read_text())
    assert record["mesh_note"] == "no mesh.glb: no surface at this level"
    assert not (out / "mesh.glb").exists() and "mesh.glb" not in record["files"]


def test_ctrl_c_leaves_a_checkpoint_and_resume_finishes_the_same_run(first_run, tiny_folder, tmp_path, monkeypatch, capsys):
    step = System.step

    def step_then_interrupt(self):
        info = step(self)
        if self.step_count == 2:
            signal.raise_signal(signal.SIGINT)  # as a user's Ctrl-C would, in the middle of the run
        return info

    monkeypatch.setattr(System, "step", step_then_interrupt)
    out = tmp_path / "interrupted"
    assert generate(tiny_folder, out, "--seed", "3") == 130
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted" and record["steps_done"] == 2 and (out / "checkpoint.pt").exists()
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(System, "step", step)
    resume = ["generate", "--out", str(out), "--resume", "--device", "cpu"]
    for more, message in ((["--seed", "4"], "--resume: expected no --seed"), (["a blue cube"], "expected no prompt"),
                          (["--set", "system.steps=9"], "expected no --set"),
                          (["--pretrained", str(tmp_path)], f"--pretrained: the run in {out} was started on {tiny_folder}")):
        assert cli.main([*resume, *more]) == 2 and message in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"  # the refusals changed nothing
    assert cli.main(resume) == 0  # on the prior it was started on, which run.json names
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["pretrained"] == tiny_folder
    # The resumed run is the uninterrupted one (same seed and config), weight for weight.
    assert all(torch.equal(weights(first_run)[k], weights(out)[k]) for k in weights(first_run))


def test_magic3d_writes_a_coloured_glb_and_resumes_from_its_fine_stage(tiny_folder, tmp_path, monkeypatch):
    fine = ["fine.steps=3", "fine.render_size=16", "fine.geometry.resolution=10", "--method", "magic3d"]  # --set first
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert generate(tiny_folder, whole, *fine) == 0
    record = json.loads((whole / "run.json").read_text())
    assert record["config"]["method"] == "magic3d" and record["steps_done"] == 7 and record["mesh_note"] is None
    mesh = trimesh.load(whole / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0 and mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)
    step = System.step

    def interrupt_in_the_fine_stage(self):
        info = step(self)
        if self.name.endswith("fine") and self.step_count == 1:
            signal.raise_signal(signal.SIGINT)
        return info

    monkeypatch.setattr(System, "step", interrupt_in_the_fine_stage)
    assert generate(tiny_folder, part, *fine) == 130
    assert json.loads((part / "run.json").read_text())["steps_done"] == 5
    monkeypatch.setattr(System, "step", step)
    assert cli.main(["generate", "--out", str(part), "--resume", "--pretrained", tiny_folder, "--device", "cpu"]) == 0
    saved = [torch.load(d / "checkpoint.pt", weights_only=False)["fine"]["geometry"] for d in (whole, part)]
    assert all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])


@pytest.mark.parametrize("argv,message", [
    (["--method", "dreamfusoin"], "--method: unknown method 'dreamfusoin'; expected one of dreamfusion"),
    (["--set", "guidance.scale=15"], "guidance.scale: unknown key; expected one of guidance.guidance_scale"),
    (["--set", "system.steps=many"], "system.steps: expected int, got 'many'"),
    (["--set", "system.steps"], "--set: expected KEY=VALUE"),
])
def test_bad_input_gets_one_line_naming_it(argv, message, tmp_path, capsys):
    assert cli.main(["generate", "a red duck", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()  # nothing written for a run that never started


def test_quick_mode_takes_the_chapters_quick_step_counts(monkeypatch, tmp_path):
    args = cli._parser().parse_args(["generate", "a red duck", "--out", str(tmp_path)])
    monkeypatch.setenv("MINIDIFF3D_QUICK", "1")
    quick = cli.build_config(args)
    monkeypatch.setenv("MINIDIFF3D_QUICK", "0")
    full = cli.build_config(args)
    assert (quick.system.steps, quick.system.lr_end) == (120, None) and (full.system.steps, full.system.lr_end) == (600, 1e-3)


def test_methods_and_doctor_answer():
    listed = subprocess.run([sys.executable, "-m", "minidiff3d", "methods"], capture_output=True, text=True, check=True)
    first = listed.stdout.splitlines()[0].split(maxsplit=1)  # names padded to the longest
    assert first[0] == "dreamfusion" and first[1].startswith("DreamFusion: score distillation")
    assert "dreamgaussian-image" in listed.stdout
    doctor = subprocess.run([sys.executable, "-m", "minidiff3d", "doctor"], capture_output=True, text=True)
    assert doctor.returncode == 0, doctor.stderr
    assert "shipped assets:" in doctor.stdout and "match the manifest's sha256" in doctor.stdout
    assert "device: cpu" in doctor.stdout and "toy-world cache:" in doctor.stdout


def test_the_gsplat_backend_without_gsplat_is_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gsplat", None)  # not installed
    argv = ["generate", "a blue cone", "--method", "dreamgaussian", "--out", str(tmp_path / "x"), "--set",
            "renderer.backend=gsplat"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "backend='gsplat': needs the gsplat package" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_dreamgaussian_writes_its_textured_mesh_in_one_piece(tiny_folder, tmp_path):
    out = tmp_path / "cone"
    small = ["system.steps=3", "system.render_size=16", "geometry.count=300", "geometry.scale=0.1", "geometry.opacity=0.5",
             "texture.resolution=24", "texture.azimuths=4", "texture.elevations=[15.0]", "texture.render_size=16",
             "texture.steps=5", "texture.level=0.3"]
    assert cli.main(["generate", "a blue cone", "--method", "dreamgaussian", "--out", str(out), "--pretrained",
                     tiny_folder, "--device", "cpu", "--set", *small]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["method"] == "dreamgaussian" and record["steps_done"] == 3 and record["mesh_note"] is None
    mesh = trimesh.load(out / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0 and mesh.is_watertight and len(mesh.split(only_watertight=False)) == 1
