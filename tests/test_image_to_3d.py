"""Image-to-3D: Zero123-SDS (guidance, image prompt, reference view) and One-2-3-45, on a tiny Zero123 built from configs."""

import copy
import json

import pytest
import torch
from PIL import Image

from minidiff3d import cli
from minidiff3d.cameras import Cameras, orbit_camera
from minidiff3d.guidance import ImagePrompt, Zero123Distillation, sds_weight
from minidiff3d.priors import tiny_stable_diffusion
from minidiff3d.priors.toy_zero123 import tiny_zero123
from minidiff3d.metrics import psnr
from minidiff3d.systems import run_config, view_psnr
from minidiff3d.toyworld import make_object, render
from minidiff3d.zero123 import relative_camera

SMALL = {"system.render_size": 16, "renderer.n_samples": 16, "geometry.blob_density": 10}


@pytest.fixture(scope="module")
def tiny():
    return tiny_zero123()


@pytest.fixture(scope="module")
def duck_image():
    """A toy-world duck from elevation 15°, azimuth 0°, at the tiny model's 32 px: ``[3,32,32]``."""
    return render(make_object("duck", "yellow", 0), orbit_camera(15.0, 0.0, 2.8), 32, 32, antialias=2)["image"].permute(2, 0, 1)


@pytest.fixture(scope="module")
def duck_png(duck_image, tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "duck.png"
    Image.fromarray((duck_image.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
    return path


def test_image_prompt_gives_each_camera_its_move_from_the_input(tiny, duck_image):
    prompt = ImagePrompt(tiny, duck_image, elevation=15.0, azimuth=30.0)
    cameras = Cameras.orbit(torch.tensor([15.0, 45.0]), torch.tensor([30.0, 210.0]))
    conditions = prompt.conditions(cameras)
    embeds, latents = conditions["image"]
    assert embeds.shape == (2, 24) and latents.shape == (2, 4, 16, 16)
    assert torch.allclose(conditions["camera"], relative_camera(15.0, 30.0, torch.tensor([15.0, 45.0]),
                                                                torch.tensor([30.0, 210.0])))
    assert torch.allclose(conditions["camera"][0], torch.tensor([0.0, 0.0, 1.0, 0.0]), atol=1e-6)  # the input's own
    assert prompt.reference(16).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="image"):
        ImagePrompt(tiny, torch.rand(3, 64, 64))


def test_zero123_sds_gradient_is_weighted_guided_noise_minus_noise(tiny, duck_image):
    guidance = Zero123Distillation(tiny, guidance_scale=3.0)
    prompt = ImagePrompt(tiny, duck_image)
    cameras = Cameras.orbit(torch.tensor([15.0, 15.0]), torch.tensor([90.0, 180.0]))
    renders = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = guidance.loss(renders, cameras, prompt.conditions(cameras), 0.0, torch.Generator().manual_seed(1))
    noisy = tiny.scheduler.add_noise(out.latents.detach(), out.noise, out.t)
    embeds, latents = prompt.conditions(cameras)["image"]
    expected = tiny.guided_noise(noisy, out.t, latents, embeds, prompt.conditions(cameras)["camera"], 3.0)
    assert torch.allclose(out.noise_pred, expected, atol=1e-5)
    w = sds_weight(tiny.scheduler.alphas_cumprod[out.t]).view(-1, 1, 1, 1)
    assert torch.allclose(out.grad, w * (expected - out.noise), atol=1e-5)
    out.loss.backward()
    assert renders.grad is not None and renders.grad.abs().sum() > 0  # through the encoder to the renders
    with pytest.raises(ValueError, match="conditions"):
        guidance.loss(renders, cameras, {"text": None})
    threestudio = Zero123Distillation(tiny, guidance_scale=3.0, cfg="threestudio")  # the setting reaches the formula
    got = threestudio.guided_noise(noisy, out.t, prompt.conditions(cameras))
    assert torch.allclose(got, tiny.guided_noise(noisy, out.t, latents, embeds, prompt.conditions(cameras)["camera"],
                                                 3.0, cfg="threestudio"), atol=1e-5)
    assert not torch.allclose(got, expected, atol=1e-3)
    with pytest.raises(TypeError, match="zero123.Zero123"):
        Zero123Distillation(tiny_stable_diffusion())


def test_zero123_run_fits_its_reference_view(tiny, duck_png):
    config = run_config("zero123", overrides={**SMALL, "system.steps": 30, "system.lr_end": None,
                                              "prompt.image": str(duck_png), "guidance.guidance_scale": 1.0})
    run = config.build(tiny)
    before = run.reference_loss().item()
    run.fit(show_progress=False)
    assert run.step_count == 30 and run.reference_loss().item() < 0.5 * before
    with pytest.raises(ValueError, match="prompt: expected a prompt with an input image"):
        run_config("dreamfusion", "a red duck", SMALL).build(tiny_stable_diffusion()).reference_loss()


def test_image_prompt_config_needs_an_image(tiny):
    with pytest.raises(ValueError, match="prompt.image"):
        run_config("zero123", overrides=SMALL).build(tiny)


def test_one2345_samples_its_ring_once_and_resumes_with_it(tiny, duck_png):
    config = run_config("one2345", overrides={**SMALL, "system.steps": 6, "prompt.image": str(duck_png),
                                              "guidance.num_inference_steps": 2})
    run = config.build(tiny)
    run.fit(3, show_progress=False)
    images, cameras = run.views
    assert len(images) == len(cameras) == 16  # 2 elevations x 8 turns, the input standing in for its own camera
    assert torch.equal(images[0], run.prompt.image) and cameras.elevation[0] == 15.0 and cameras.azimuth[0] == 0.0
    assert torch.unique(torch.stack([cameras.elevation, cameras.azimuth % 360], 1), dim=0).shape[0] == 16
    resumed = config.build(tiny)
    resumed.load_state_dict(copy.deepcopy(run.state_dict()))  # as a checkpoint on disk would: no shared tensors
    assert torch.equal(resumed.views[0], images)
    run.fit(3, show_progress=False)
    resumed.fit(3, show_progress=False)
    a, b = run.geometry.state_dict(), resumed.geometry.state_dict()
    assert all(torch.allclose(a[k], b[k]) for k in a)  # the same views, the same steps: the same field


def test_cli_generates_from_an_image(tiny, duck_png, tmp_path):
    folder = tmp_path / "tiny_zero123"
    tiny.save_pretrained(folder)
    out = tmp_path / "duck"
    code = cli.main(["generate", "a yellow duck", "--image", str(duck_png), "--method", "one2345", "--out", str(out),
                     "--pretrained", str(folder), "--device", "cpu", "--set", "system.steps=3", "system.render_size=16",
                     "renderer.n_samples=16", "guidance.num_inference_steps=2", "geometry.blob_density=10"])
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["config"]["prompt"]["image"] == str(duck_png)
    assert record["pretrained"] == str(folder) and 0.0 <= record["r_precision"] <= 1.0
    dreamgaussian = tmp_path / "duck-dg"  # a text method with an image variant takes --image: dreamgaussian-image
    assert cli.main(["generate", "--image", str(duck_png), "--method", "dreamgaussian", "--out", str(dreamgaussian),
                     "--pretrained", str(folder), "--device", "cpu", "--set", "system.steps=2", "system.render_size=16",
                     "geometry.count=300", "geometry.scale=0.1", "geometry.opacity=0.5", "texture.resolution=24",
                     "texture.azimuths=4", "texture.elevations=[15.0]", "texture.render_size=16", "texture.steps=5",
                     "texture.level=0.3"]) == 0
    record = json.loads((dreamgaussian / "run.json").read_text())
    assert record["config"]["method"] == "dreamgaussian-image" and record["pretrained"] == str(folder)
    assert (dreamgaussian / "mesh.glb").exists()
    assert cli.main(["generate", "--image", str(duck_png), "--method", "dreamfusion", "--out", str(tmp_path / "x")]) == 2
    assert cli.main(["generate", "--method", "zero123", "--out", str(tmp_path / "y")]) == 2
    assert cli.main(["generate", "--image", str(tmp_path / "missing.png"), "--method", "zero123", "--out",
                     str(tmp_path / "z"), "--pretrained", str(folder), "--device", "cpu"]) == 2


def test_view_psnr_scores_the_unseen_turns_against_the_toy_world(tiny, duck_png):
    run = run_config("zero123", overrides={**SMALL, "prompt.image": str(duck_png)}).build(tiny)
    duck = make_object("duck", "yellow", 0)
    by_hand = [psnr(run.render(15.0, az, size=32, shading="lambertian")["rgb"][0],
                    render(duck, orbit_camera(15.0, az, 2.8), 32, 32, antialias=2)["image"].permute(2, 0, 1)).item()
               for az in (90.0, 180.0)]
    assert view_psnr(run, duck, azimuths=(90.0, 180.0), size=32) == pytest.approx(sum(by_hand) / 2, abs=1e-4)
    assert 5 < view_psnr(run, duck, size=32) < 40
    wide = run_config("zero123", overrides={**SMALL, "prompt.image": str(duck_png), "system.fov_deg": 60.0}).build(tiny)
    truth_at_60 = render(duck, orbit_camera(15.0, 90.0, 2.8), 32, 32, fov_deg=60.0, antialias=2)["image"].permute(2, 0, 1)
    expected = psnr(wide.render(15.0, 90.0, size=32, shading="lambertian")["rgb"][0], truth_at_60).item()
    assert view_psnr(wide, duck, azimuths=(90.0,), size=32) == pytest.approx(expected, abs=1e-4)  # the run's own lens
