import importlib.util
import re
from pathlib import Path

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from minidiff3d import splatting
from minidiff3d.cameras import get_rays, look_at, orbit_camera
from minidiff3d.exercises import ch03, ch04, ch08, ch11, check, exercises, get_exercise, verify
from minidiff3d.guidance import MultiViewDistillation, ScoreDistillation
from minidiff3d.priors import tiny_stable_diffusion
from minidiff3d.priors.toy_mvdream import tiny_mvdream
from minidiff3d.scene.gaussians import Gaussians

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


# Chapter 08: MVDream. Each mistake below is one the exercise's markdown warns of; its hint must name it.

def _attend(attn, x):
    return AttnProcessor2_0()(attn, x)


def _per_view_attention(attn, hidden_states, num_views):  # forgot the reshape: the 2-D model's attention
    return _attend(attn, hidden_states)


def _per_position_attention(attn, hidden_states, num_views):  # the source chapter's: (B·V, L, C) -> (B·L, V, C)
    rows, tokens, channels = hidden_states.shape
    sets = rows // num_views
    x = hidden_states.reshape(sets, num_views, tokens, channels).transpose(1, 2).reshape(sets * tokens, num_views, channels)
    return _attend(attn, x).reshape(sets, tokens, num_views, channels).transpose(1, 2).reshape(rows, tokens, channels)


def _views_and_sets_swapped(attn, hidden_states, num_views):  # groups V chunks of B·L tokens: objects mixed
    rows, tokens, channels = hidden_states.shape
    return _attend(attn, hidden_states.reshape(num_views, -1, channels)).reshape(rows, tokens, channels)


def _rows_read_view_major(attn, hidden_states, num_views):  # rows taken as v·B + b instead of b·V + v
    rows, tokens, channels = hidden_states.shape
    sets = rows // num_views
    x = hidden_states.reshape(num_views, sets, tokens, channels).transpose(0, 1).reshape(sets, -1, channels)
    return _attend(attn, x).reshape(sets, num_views, tokens, channels).transpose(0, 1).reshape(rows, tokens, channels)


def _joint_not_reshaped_back(attn, hidden_states, num_views):
    rows, tokens, channels = hidden_states.shape
    return _attend(attn, hidden_states.reshape(rows // num_views, -1, channels))


def _cameras(elevation, azimuth, subtract=0, radius=1.0, transpose=False):
    c2w = orbit_camera(elevation, azimuth - (0 if subtract is None else azimuth[subtract]), radius)
    return (c2w.mT if transpose else c2w).reshape(len(azimuth), 16)


def _time_embedding(unet, timesteps):
    return unet.time_embedding(unet.time_proj(timesteps))


def _camera_on_the_text(unet, timesteps, cameras):
    """The source chapter's design: the camera's MLP output goes onto the text embedding, and what reaches the
    residual blocks is the timestep embedding alone."""
    return _time_embedding(unet, timesteps)


def _draw(n_sets, low, high, generator):
    return torch.randint(low, high + 1, (n_sets,), generator=generator)


def _whole_batch_attention(attn, hidden_states, num_views):  # every object's tokens together
    return _attend(attn, hidden_states.reshape(1, -1, hidden_states.shape[-1])).reshape(hidden_states.shape)


def _camera_mlp_on_t(unet, timesteps, cameras):  # the right sum, the camera MLP fed the wrong input
    return _time_embedding(unet, timesteps) + unet.class_embedding(unet.time_proj(timesteps))


def _high_excluded(n_sets, num_views, low, high, generator):  # torch.randint(low, high, ...)
    return _draw(n_sets, low, high - 1, generator).repeat_interleave(num_views)


@pytest.mark.parametrize("name, wrong, hint", [
    pytest.param("joint_attention", _per_view_attention, "that is per-view attention", id="per-view"),
    pytest.param("joint_attention", _per_position_attention, "the source chapter's per-position attention",
                 id="per-position"),
    pytest.param("joint_attention", _views_and_sets_swapped, "views and sets are swapped", id="views-sets-swapped"),
    pytest.param("joint_attention", _rows_read_view_major, "views and sets are swapped", id="rows-view-major"),
    pytest.param("joint_attention", _whole_batch_attention, "all the objects' tokens attend together", id="whole-batch"),
    pytest.param("joint_attention", _joint_not_reshaped_back, "reshape the output back", id="not-reshaped-back"),
    pytest.param("relative_cameras", lambda elevation, azimuth: _cameras(elevation, azimuth, subtract=None),
                 "absolute azimuths", id="absolute"),
    pytest.param("relative_cameras", lambda elevation, azimuth: _cameras(elevation, azimuth, radius=2.8),
                 "pass radius 1", id="radius-2.8"),
    pytest.param("relative_cameras", lambda elevation, azimuth: _cameras(elevation, azimuth, transpose=True),
                 "column by column", id="column-major"),
    pytest.param("relative_cameras", lambda elevation, azimuth: _cameras(elevation, azimuth, subtract=-1),
                 "the azimuth subtracted is view 3's", id="last-view"),
    pytest.param("relative_cameras", lambda elevation, azimuth: _cameras(elevation, azimuth, subtract=1),
                 "the azimuth subtracted is view 1's", id="second-view"),
    pytest.param("relative_cameras", lambda elevation, azimuth: orbit_camera(elevation, azimuth - azimuth[0], 1.0),
                 "row by row: [V,16]", id="not-flattened"),
    pytest.param("time_and_camera_embedding", lambda unet, timesteps, cameras: _time_embedding(unet, timesteps),
                 "the camera is missing", id="camera-missing"),
    pytest.param("time_and_camera_embedding", _camera_on_the_text, "only the cross-attention layers read the text",
                 id="camera-on-text"),
    pytest.param("time_and_camera_embedding", _camera_mlp_on_t, "the camera MLP got the timestep's sinusoidal features",
                 id="camera-mlp-on-t"),
    pytest.param("time_and_camera_embedding", lambda unet, timesteps, cameras: unet.class_embedding(cameras),
                 "the timestep is missing", id="timestep-missing"),
    pytest.param("time_and_camera_embedding", lambda unet, timesteps, cameras: unet.time_proj(timesteps) + cameras,
                 "[N,16] is the size of the sinusoidal features", id="no-mlps"),
    pytest.param("set_timesteps", lambda n_sets, num_views, low, high, generator: _draw(n_sets * num_views, low, high,
                                                                                      generator),
                 "the views of one set are at different noise levels", id="a-timestep-per-view"),
    pytest.param("set_timesteps", lambda n_sets, num_views, low, high, generator: _draw(n_sets, low, high, generator)
                 .repeat(num_views), "the sets are interleaved", id="repeat"),
    pytest.param("set_timesteps", _high_excluded, "high is included", id="high-excluded"),
    pytest.param("set_timesteps", lambda n_sets, num_views, low, high, generator: _draw(n_sets, low, high, generator),
                 "repeat each set's for its V views", id="one-per-set-not-repeated"),
])
def test_wrong_answers_to_chapter_08_get_their_hint(name, wrong, hint):
    result = verify(name, wrong)
    assert result.status == "failed" and hint in result.message, result.message


def test_chapter_08_time_and_camera_embedding_is_what_the_residual_blocks_receive():
    unet = tiny_mvdream().unet
    with torch.no_grad():
        torch.nn.init.normal_(unet.class_embedding.linear_2.weight, std=0.5)
    g = torch.Generator().manual_seed(0)
    noisy, t = torch.randn(4, 4, 16, 16, generator=g), torch.tensor([10, 10, 900, 900])
    text, cameras = torch.randn(4, 3, unet.config.cross_attention_dim, generator=g), torch.randn(4, 16, generator=g)
    seen = []
    hook = unet.down_blocks[0].resnets[0].register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    with torch.no_grad():
        unet(noisy, t, text, class_labels=cameras)
        expected = ch08.time_and_camera_embedding(unet, t, cameras)
    hook.remove()
    torch.testing.assert_close(seen[0], expected)
    assert (expected - _time_embedding(unet, t)).abs().max() > 0.1  # the camera counts


def test_chapter_08_set_timesteps_is_multiview_sds_draw():
    guidance = MultiViewDistillation(tiny_mvdream(), num_views=4, t_range=(0.02, 0.98), t_range_end=(0.02, 0.5))
    latents = torch.zeros(3 * 4, 4, 16, 16)
    for progress, seed in [(0.0, 0), (0.5, 1), (1.0, 2)]:
        t, _, _ = guidance._noised(latents, progress, torch.Generator().manual_seed(seed), group=4)
        low, high = guidance.timestep_bounds(progress)
        assert torch.equal(ch08.set_timesteps(3, 4, low, high, torch.Generator().manual_seed(seed)), t)
        assert (t.reshape(3, 4) == t.reshape(3, 4)[:, :1]).all()


# Chapter 11: DreamGaussian. Each mistake below is one the exercise's markdown warns of; its hint must name it.

def _xyzw(quaternions):  # (x, y, z, w) read where (w, x, y, z) is given
    x, y, z, w = quaternions.unbind(-1)
    return splatting.quaternion_to_rotation(torch.stack([w, x, y, z], -1))


def _not_a_rotation(quaternions):  # the diagonal without its factor 2
    r = splatting.quaternion_to_rotation(quaternions)
    w, x, y, z = quaternions.unbind(-1)
    return r + torch.diag_embed(torch.stack([y * y + z * z, x * x + z * z, x * x + y * y], -1))


def _ewa(means, covariances, c2w, height, width, focal, rotation=None, v_sign=-1.0, dilation=0.3, depth_column=1.0,
         translate=True, centre=True):
    """The projection as a learner writes it, with one of its parts changed."""
    rotation = c2w[:3, :3].T if rotation is None else rotation
    t = (means - c2w[:3, 3] * translate) @ rotation.T
    x, y, d = t[:, 0], t[:, 1], -t[:, 2]
    mean2d = torch.stack([width / 2 * centre + focal * x / d, height / 2 * centre + v_sign * focal * y / d], -1)
    zero = torch.zeros_like(d)
    jacobian = torch.stack([focal / d, zero, depth_column * focal * x / d**2,
                            zero, v_sign * focal / d, depth_column * v_sign * focal * y / d**2], -1).reshape(-1, 2, 3)
    m = jacobian @ rotation
    return mean2d, m @ covariances @ m.mT + dilation * torch.eye(2)


def _ewa_with(**change):
    def wrong(means, covariances, c2w, height, width, focal):
        return _ewa(means, covariances, c2w, height, width, focal, **change)
    return wrong


def _c2w_rotation(means, covariances, c2w, height, width, focal):  # W = c2w[:3, :3], not its transpose
    return _ewa(means, covariances, c2w, height, width, focal, rotation=c2w[:3, :3])


def _v_row_flipped(means, covariances, c2w, height, width, focal):  # J's v row (0, f/d, f y/d²), the mean right
    mean2d, _ = _ewa(means, covariances, c2w, height, width, focal)
    return mean2d, _ewa(means, covariances, c2w, height, width, focal, v_sign=1.0)[1]


def _v_up(means, covariances, c2w, height, width, focal):  # mean2d's v = H/2 + f y/d, the covariance right
    mean2d, _ = _ewa(means, covariances, c2w, height, width, focal, v_sign=1.0)
    return mean2d, _ewa(means, covariances, c2w, height, width, focal)[1]


def _weights(alphas, cap=True, cutoff=True, stop=True, inclusive=False):
    alphas = alphas.clamp(max=0.99) if cap else alphas
    alphas = torch.where(alphas >= 1 / 255, alphas, 0.0) if cutoff else alphas
    through = torch.cumprod(1 - alphas, 0)
    transmittance = through if inclusive else torch.cat([torch.ones(1), through[:-1]])
    return alphas * transmittance * ((transmittance > 1e-4) if stop else 1)


def _masks(hot, small):
    return hot & small, hot & ~small


@pytest.mark.parametrize("name, wrong, hint", [
    pytest.param("quaternion_to_rotation", _xyzw, "read as (x, y, z, w)", id="xyzw"),
    pytest.param("quaternion_to_rotation", lambda quaternions: splatting.quaternion_to_rotation(quaternions).mT,
                 "that is the transpose", id="transposed"),
    pytest.param("quaternion_to_rotation", _not_a_rotation, "the result is not a rotation", id="not-a-rotation"),
    pytest.param("quaternion_to_rotation", lambda quaternions: splatting.quaternion_to_rotation(quaternions).flatten(1),
                 "one 3x3 matrix per quaternion", id="flat"),
    pytest.param("project_gaussians", _ewa_with(dilation=0.0), "the 0.3 px² dilation is missing", id="no-dilation"),
    pytest.param("project_gaussians", _ewa_with(dilation=0.09), "not squared", id="dilation-squared"),
    pytest.param("project_gaussians", _c2w_rotation, "the world-to-camera rotation is its inverse", id="c2w-rotation"),
    pytest.param("project_gaussians", _v_row_flipped, "the v row has the wrong sign", id="v-row"),
    pytest.param("project_gaussians", _ewa_with(depth_column=0.0), "the Jacobian's third column is missing",
                 id="no-depth-column"),
    pytest.param("project_gaussians", _ewa_with(translate=False), "subtract the camera's position", id="untranslated"),
    pytest.param("project_gaussians", _v_up, "mean2d's v is upside down", id="mean-v-up"),
    pytest.param("project_gaussians", _ewa_with(centre=False), "add (W/2, H/2)", id="mean-not-centred"),
    pytest.param("project_gaussians", lambda **kwargs: _ewa(**kwargs)[1], "return two tensors", id="cov-only"),
    pytest.param("splat_weights", lambda alphas: _weights(alphas, inclusive=True), "an exclusive cumulative product",
                 id="inclusive"),
    pytest.param("splat_weights", lambda alphas: _weights(alphas.flip(0)).flip(0), "that is back to front",
                 id="back-to-front"),
    pytest.param("splat_weights", lambda alphas: _weights(alphas, cap=False), "α is capped at 0.99", id="no-cap"),
    pytest.param("splat_weights", lambda alphas: _weights(alphas, cutoff=False), "α < 1/255 contributes nothing",
                 id="no-cutoff"),
    pytest.param("splat_weights", lambda alphas: _weights(alphas, stop=False), "3DGS's early stop", id="no-stop"),
    pytest.param("splat_weights", lambda alphas: _weights(alphas[alphas >= 1 / 255]), "it is not removed",
                 id="faint-removed"),
    pytest.param("densify_masks", lambda scales, grad, grad_threshold, extent, percent_dense: _masks(
        grad >= grad_threshold, scales.mean(-1) <= percent_dense * extent), "its *largest* scale", id="mean-scale"),
    pytest.param("densify_masks", lambda scales, grad, grad_threshold, extent, percent_dense: _masks(
        grad > grad_threshold, scales.max(-1).values <= percent_dense * extent), "grad ≥ grad_threshold",
                 id="grad-strict"),
    pytest.param("densify_masks", lambda scales, grad, grad_threshold, extent, percent_dense: _masks(
        grad >= grad_threshold, scales.max(-1).values < percent_dense * extent), "≤, not <", id="scale-strict"),
    pytest.param("densify_masks", lambda scales, grad, grad_threshold, extent, percent_dense: _masks(
        grad >= grad_threshold, scales.max(-1).values <= percent_dense), "percent_dense · extent", id="no-extent"),
    pytest.param("densify_masks", lambda scales, grad, grad_threshold, extent, percent_dense: _masks(
        grad >= grad_threshold, scales.max(-1).values <= percent_dense * extent)[::-1], "clone and split are swapped",
                 id="swapped"),
    pytest.param("densify_masks", lambda scales, grad, grad_threshold, extent, percent_dense: (
        (grad >= grad_threshold) & (scales.max(-1).values <= percent_dense * extent),
        scales.max(-1).values > percent_dense * extent), "only hot Gaussians are split", id="split-cold"),
    pytest.param("densify_masks", lambda scales, grad, grad_threshold, extent, percent_dense: (
        grad >= grad_threshold, (grad >= grad_threshold) & (scales.max(-1).values > percent_dense * extent)),
                 "cloned or split, never both", id="clone-all-hot"),
])
def test_wrong_answers_to_chapter_11_get_their_hint(name, wrong, hint):
    result = verify(name, wrong)
    assert result.status == "failed" and hint in result.message, result.message


def test_chapter_11_splat_weights_are_what_composite_renders():
    g = torch.Generator().manual_seed(0)
    alphas = torch.cat([torch.rand(12, generator=g), torch.tensor([0.002, 1.0, 0.995, 0.5])])
    colors, background = torch.rand(len(alphas), 3, generator=g), torch.rand(3, generator=g)
    rgb = splatting.composite(torch.full((len(alphas), 2), 0.5), torch.eye(2).expand(len(alphas), 2, 2),
                              torch.arange(1.0, len(alphas) + 1), alphas, colors, 1, 1, background)["rgb"]
    weights = ch11.splat_weights(alphas)
    torch.testing.assert_close(rgb.reshape(3), weights @ colors + (1 - weights.sum()) * background)
    torch.testing.assert_close(weights, _weights(alphas), rtol=1e-5, atol=1e-8)  # the rules, written out by hand
    with pytest.raises(ValueError, match="alphas: expected values in"):
        ch11.splat_weights(torch.tensor([0.5, 1.5]))


def test_chapter_11_densify_masks_are_what_densify_does():
    scales = torch.tensor([[0.01] * 3, [0.1, 0.01, 0.01], [0.01] * 3, [0.1] * 3, [0.02] * 3])
    grad = torch.tensor([0.02, 0.02, 0.001, 0.001, 0.05])
    clone, split = ch11.densify_masks(scales, grad, 0.01, 2.0, 0.01)  # small: largest scale ≤ 0.02
    assert clone.tolist() == [True, False, False, False, True] and split.tolist() == [False, True, False, False, False]
    model = Gaussians(torch.zeros(5, 3), scales.log(), torch.tensor([1.0, 0, 0, 0]).expand(5, 4), torch.zeros(5),
                      torch.zeros(5, 3))
    model.grad_sum, model.seen = grad.clone(), torch.ones(5)
    counts = model.densify(torch.optim.Adam(model.parameters()), 0.01, 2.0, 0.01)
    assert (counts["cloned"], counts["split"], len(model)) == (2, 1, 5 + 2 + 1)
    with pytest.raises(ValueError, match="grad: expected shape"):
        ch11.densify_masks(scales, grad[:3], 0.01, 2.0, 0.01)
    with pytest.raises(ValueError, match="covariances: expected shape"):
        ch11.project_gaussians(torch.zeros(2, 3), torch.eye(3).expand(3, 3, 3), torch.eye(4), 8, 8, 10.0)
