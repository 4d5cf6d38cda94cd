import importlib.util
import re
from pathlib import Path

import pytest
import torch

from minidiff3d.cameras import get_rays, look_at, orbit_camera
from minidiff3d.exercises import ch03, ch04, check, exercises, get_exercise, verify
from minidiff3d.guidance import ScoreDistillation
from minidiff3d.priors import tiny_stable_diffusion

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
    for name in exercises(source.stem[:2]):
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


MIN_EXERCISES, MIN_CASES = 4, 8  # per chapter, and per exercise (COURSE_DESIGN.md, "Exercises")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_each_chapter_checks_at_least_four_exercises_of_its_own(source):
    names = exercises(source.stem[:2])
    assert len(names) >= MIN_EXERCISES, f"chapter {source.stem[:2]} registers {names}"
    # the check cells call exactly the chapter's own exercises: none is borrowed from another chapter
    assert re.findall(r'check\("(\w+)"', source.read_text()) == names


@pytest.mark.parametrize("name", exercises())
@pytest.mark.parametrize("seed", [0, 1])
def test_every_exercise_runs_eight_cases_that_its_reference_passes(name, seed):
    ex = get_exercise(name)
    assert len(ex.cases(torch.Generator().manual_seed(seed))) >= MIN_CASES
    result = verify(name, ex.reference, seed)
    assert result.passed, result.message


def _flip_column_2(eye, target, up):
    c2w = look_at(eye, target, up)
    c2w[:3, 2] = -c2w[:3, 2]
    return c2w


def _gradient_by_r(grid, bounds):  # the voxel size as (hi - lo) / R
    return ch03._gradient_reference(grid, bounds) * (grid.shape[0] - 1) / grid.shape[0]


def _directed_edges(vertices, faces):
    edges, uses = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).unique(dim=0, return_counts=True)
    return len(faces.unique()) - len(edges) + len(faces), int((uses == 1).sum())  # (a, b) and (b, a) counted apart


def _sds_sign_flipped(**kwargs):
    grad, loss = ch04.sds_step(**kwargs)
    return -grad, loss


def _sds_target_not_detached(latents, **kwargs):
    grad, _ = ch04.sds_step(latents, **kwargs)
    return grad, 0.5 * (latents - (latents - grad)).pow(2).sum()


def _sds_through_the_unet(latents, noise, t, alphas_cumprod, denoiser, guidance_scale, weighting):
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    noise_cond, noise_uncond = denoiser(a.sqrt() * latents + (1 - a).sqrt() * noise, t)  # with autograd on
    residual = noise_uncond + guidance_scale * (noise_cond - noise_uncond) - noise
    return (1 - a) * residual, 0.5 * ((1 - a) * residual.square()).sum()  # the diffusion loss itself, Jacobian and all


@pytest.mark.parametrize("name, wrong, hint", [
    ("look_at", _flip_column_2, "column 2 is the *backward* axis"),
    ("sdf_gradient", _gradient_by_r, "span R - 1 intervals"),
    ("mesh_topology", _directed_edges, "(a, b) and (b, a) are one edge"),
    ("mesh_topology", lambda vertices, faces: (len(vertices) - 3 * len(faces) // 2 + len(faces), 0), "euler_characteristic"),
    ("sds_step", _sds_sign_flipped, "the sign is flipped"),
    ("sds_step", _sds_target_not_detached, "the loss sends no gradient into the latents"),
    ("sds_step", _sds_through_the_unet, "SDS skips the U-Net's Jacobian"),
    ("sds_step", lambda **kwargs: ch04.sds_step(**{**kwargs, "t": kwargs["t"] - 1}), "grad: entry"),  # off by one in t
])
def test_wrong_answers_to_the_new_exercises_fail(name, wrong, hint):
    result = verify(name, wrong)
    assert result.status == "failed" and hint in result.message, result.message


def test_sds_step_reference_is_the_package_score_distillation():
    pipe = tiny_stable_diffusion()
    sds = ScoreDistillation(pipe, guidance_scale=7.5)
    cond, _ = pipe.encode_prompt(["a red duck", "a blue cube", "a green torus"], "cpu", 1, False)
    uncond = pipe.encode_prompt([""], "cpu", 1, False)[0].expand_as(cond)
    latents = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    out = sds.from_latents(latents, (cond, uncond), generator=torch.Generator().manual_seed(1))

    def denoiser(noisy, t):
        return tuple(pipe.unet(noisy, t, embeddings).sample for embeddings in (cond, uncond))

    grad, loss = ch04.sds_step(latents, out.noise, out.t, sds.alphas_cumprod, denoiser, 7.5, "sds")
    # One batched U-Net pass against two single ones differ by float rounding, which the scale multiplies;
    # a wrong scale would be off by w (ε_c - ε_u), far above the tolerance.
    tolerance = dict(rtol=0, atol=1e-3)
    torch.testing.assert_close(grad, out.grad, **tolerance)
    torch.testing.assert_close(loss, out.loss, rtol=1e-4, atol=1e-4)
    unguided, _ = ch04.sds_step(latents, out.noise, out.t, sds.alphas_cumprod, denoiser, 1.0, "sds")
    assert (unguided - out.grad).abs().max() > 10 * tolerance["atol"]
