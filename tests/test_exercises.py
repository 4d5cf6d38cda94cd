import importlib.util
from pathlib import Path

import pytest
import torch

from minidiff3d.cameras import get_rays, orbit_camera
from minidiff3d.exercises import check, exercises, verify

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_exercises", ROOT / "scripts" / "build_exercises.py")
build_exercises = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_exercises)
SOURCES = sorted((ROOT / "exercises" / "source").glob("[0-9][0-9]_*.py"))


def test_committed_notebooks_are_in_sync_with_their_sources():
    assert SOURCES, "no exercise sources found"
    assert build_exercises.check() == []


def _namespace(notebook):
    namespace = {}
    for cell in notebook.cells:
        if cell.cell_type == "code" and "check(" not in cell.source:
            exec(cell.source, namespace)
    return namespace


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_solutions_pass_and_stubs_are_not_done(source):
    notebooks = build_exercises.variants(source)
    solved, stubs = _namespace(notebooks["solutions"]), _namespace(notebooks["exercises"])
    names = exercises(source.stem[:2])
    assert len(names) >= 2
    for name in names:
        assert verify(name, solved[name]).passed, verify(name, solved[name]).message
        assert verify(name, stubs[name]).status == "not done"


def test_exercise_stub_keeps_indentation():
    notebook = build_exercises.variants(SOURCES[0])["exercises"]
    stub = next(c.source for c in notebook.cells if c.source.startswith("def orbit_camera"))
    assert stub.splitlines()[1] == '    raise NotImplementedError("your code here")'


def test_wrong_answers_are_explained(capsys):
    def transposed(elevation_deg, azimuth_deg, radius):
        return orbit_camera(elevation_deg, azimuth_deg, radius).T

    result = verify("orbit_camera", transposed)
    assert result.status == "failed" and "entry [" in result.message and "expected" in result.message

    def wrong_shape(c2w, height, width, focal):
        origins, directions = get_rays(c2w, height, width, focal)
        return origins, directions.permute(2, 0, 1)

    result = verify("get_rays", wrong_shape)
    assert "directions: shape [3, 5, 5], expected [5, 5, 3]" in result.message

    def crashes(c2w, height, width, focal):
        return c2w @ torch.ones(3)

    result = verify("get_rays", crashes)
    assert result.status == "failed" and "raised RuntimeError" in result.message and "Traceback" not in result.message

    check("get_rays", lambda c2w, height, width, focal: get_rays(c2w, height, width, focal, normalize=False))
    out = capsys.readouterr().out
    assert out.startswith("✘ get_rays") and "hint: the directions are right but not unit length" in out


def test_unknown_exercise_is_named():
    with pytest.raises(ValueError, match="name: expected one of .*got 'nope'"):
        verify("nope", lambda: None)
