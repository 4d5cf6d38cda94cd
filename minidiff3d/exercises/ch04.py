"""Chapter 04's exercises: classifier-free guidance, the weighting w(t), the SDS surrogate loss, a whole SDS
step, and choosing a view-dependent prompt."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from ..diffusion.sampling import classifier_free_guidance
from ..guidance import sds_weight
from ..priors.captions import VIEWS, view_name
from ..priors.toy_sd import SD_SCHEDULE
from . import Exercise, _describe, register, repeat

_ALPHAS_CUMPROD = DDIMScheduler.from_config(SD_SCHEDULE).alphas_cumprod  # toy SD's, as Stable Diffusion's


def _pick(g, options):
    return options[int(torch.randint(len(options), (1,), generator=g))]


def _latents(g, batch=None):
    if batch is None:
        batch = int(torch.randint(1, 5, (1,), generator=g))
    size = int(torch.randint(2, 9, (1,), generator=g))
    return torch.randn(batch, 4, size, size, generator=g)


def _cfg_reference(noise_cond, noise_uncond, scale):
    return classifier_free_guidance(noise_cond, noise_uncond, scale, "diffusers")


def _cfg_cases(g):
    def case(scale, latents=None):
        latents = _latents(g) if latents is None else latents
        return dict(noise_cond=latents, noise_uncond=torch.randn(latents.shape, generator=g), scale=scale)

    edges = [("scale 1 is the conditional prediction", case(1.0, torch.randn(1, 4, 2, 2, generator=g))),
             ("scale 0 is the unconditional one", case(0.0, torch.randn(1, 4, 2, 2, generator=g))),
             ("DreamFusion's scale", case(100.0, torch.randn(2, 4, 8, 8, generator=g)))]
    return edges + repeat(5, "random", lambda: case(round(-2 + 30 * torch.rand(1, generator=g).item(), 3)))


def _cfg_diagnose(got, expected, kwargs):
    c, u, s = kwargs["noise_cond"], kwargs["noise_uncond"], kwargs["scale"]
    got = torch.as_tensor(got)
    if got.shape != c.shape:
        return "the guided prediction has the shape of either prediction."
    if torch.allclose(got, classifier_free_guidance(c, u, s, "threestudio"), atol=1e-4):
        return "that is threestudio's form, which starts from ε_c; diffusers' (asked for here) starts from ε_u."
    if torch.allclose(got, classifier_free_guidance(u, c, s), atol=1e-4):
        return "the conditional and unconditional predictions are swapped: guidance moves away from ε_u, towards ε_c."
    return "scale 0 gives the unconditional prediction, scale 1 the conditional one, and the result is linear in the scale."


def _weight_reference(betas, timesteps, weighting):
    return sds_weight(torch.cumprod(1 - betas, 0)[timesteps], weighting)


def _weight_cases(g):
    linear, scaled = torch.linspace(1e-4, 0.02, 1000), torch.linspace(8.5e-4**0.5, 0.012**0.5, 1000) ** 2

    def random():
        return dict(betas=_pick(g, (linear, scaled)), timesteps=torch.randint(0, 1000, (16,), generator=g),
                    weighting=_pick(g, ("sds", "uniform")))

    edges = [("the sds weighting", dict(betas=linear, timesteps=torch.tensor([0, 20, 500, 980]), weighting="sds")),
             ("uniform", dict(betas=linear, timesteps=torch.tensor([3, 700]), weighting="uniform")),
             ("both ends of the schedule", dict(betas=scaled, timesteps=torch.tensor([0, 999]), weighting="sds")),
             ("one timestep", dict(betas=scaled, timesteps=torch.tensor([250]), weighting="sds"))]
    return edges + repeat(4, "random", random)


def _weight_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one weight per timestep: shape [B]."
    alphas_cumprod = torch.cumprod(1 - kwargs["betas"], 0)[kwargs["timesteps"]]
    if torch.allclose(got, alphas_cumprod, atol=1e-4):
        return "that is ᾱ_t itself, the signal's share; DreamFusion weights by the noise's share at t."
    if torch.allclose(got, 1 - (1 - kwargs["betas"])[kwargs["timesteps"]], atol=1e-4):
        return "ᾱ_t accumulates every step up to t, not step t alone."
    return "'sds' weights each t by the variance of the noise at t; 'uniform' weights every t the same, by 1."


def _surrogate_reference(latents, grad):
    latents = latents.detach().clone().requires_grad_(True)
    target = (latents - grad).detach()
    loss = 0.5 * (latents - target).pow(2).sum()
    (latents_grad,) = torch.autograd.grad(loss, latents)
    return loss.detach(), latents_grad


def _surrogate_cases(g):
    edges = [("one latent", dict(latents=torch.randn(1, 4, 2, 2, generator=g), grad=torch.randn(1, 4, 2, 2, generator=g))),
             ("a zero gradient", dict(latents=torch.randn(2, 4, 4, 4, generator=g), grad=torch.zeros(2, 4, 4, 4))),
             ("a batch", dict(latents=torch.randn(3, 4, 8, 8, generator=g), grad=0.1 * torch.randn(3, 4, 8, 8, generator=g)))]

    def random():
        latents = _latents(g)
        return dict(latents=latents, grad=torch.randn(latents.shape, generator=g) * 10 ** torch.randn(1, generator=g).item())

    return edges + repeat(5, "random", random)


def _surrogate_diagnose(got, expected, kwargs):
    if isinstance(got, tuple | list) and len(got) == 2 and torch.as_tensor(got[1]).abs().max() < 1e-8 < expected[1].abs().max():
        return ("the gradient is zero: if the target is not detached, it moves with z and cancels it. "
                "Detach the target so that only the first z carries gradient.")
    return "only the loss's gradient matters, not its value: half a squared distance to a target that autograd treats as a constant."


def sds_step(latents, noise, t, alphas_cumprod, denoiser, guidance_scale, weighting):
    """One SDS step on ``latents [B,4,h,w]``: the gradient ``w(t) (ε̂ - ε)``, and a loss whose gradient it is.

    ``denoiser(noisy, t)`` returns the U-Net's conditional and unconditional noise predictions; the
    pieces are the package's own, as in ``ScoreDistillation.from_latents``.
    """
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():  # SDS skips the U-Net's Jacobian: the prior only runs forward
        noise_pred = classifier_free_guidance(*denoiser(a.sqrt() * latents + (1 - a).sqrt() * noise, t), guidance_scale)
    grad = sds_weight(alphas_cumprod[t], weighting).view(-1, 1, 1, 1) * (noise_pred - noise)
    target = (latents - grad).detach()
    return grad, 0.5 * (latents - target).pow(2).sum()


def _toy_denoiser(g, channels=4):
    """A differentiable stand-in for the U-Net's two passes: fixed random 1x1 convolutions, shifted by t."""
    weights = torch.randn(2, channels, channels, generator=g) / channels**0.5

    def denoiser(noisy, t):
        shift = t.view(-1, 1, 1, 1) / 1000
        noise_cond, noise_uncond = (torch.tanh(torch.einsum("oc,bchw->bohw", w, noisy) + shift) for w in weights)
        return noise_cond, noise_uncond

    return denoiser


def _sds_run(fn, kwargs):
    """Call with latents that require grad, as a renderer's do, and read back the gradient the loss sends into them.

    Only the loss's gradient is compared, not its value: ½‖z - sg(z - g)‖² and (sg(g) · z).sum() are both right.
    """
    latents = kwargs["latents"].requires_grad_(True)
    out = fn(**kwargs)
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise TypeError(f"expected a tuple (grad, loss), got {_describe(out)}")
    grad, loss = out
    carried = None
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        (carried,) = torch.autograd.grad(loss, latents, allow_unused=True)
    return grad, torch.zeros_like(latents) if carried is None else carried


def _sds_cases(g):
    def case(t, guidance_scale=100.0, weighting="sds", latents=None):
        latents = _latents(g, len(t)) if latents is None else latents
        return dict(latents=latents, noise=torch.randn(latents.shape, generator=g), t=t, alphas_cumprod=_ALPHAS_CUMPROD.clone(),
                    denoiser=_toy_denoiser(g), guidance_scale=guidance_scale, weighting=weighting)

    def random():
        t = torch.randint(20, 980, (int(torch.randint(1, 5, (1,), generator=g)),), generator=g)
        return case(t, round(1 + 99 * torch.rand(1, generator=g).item(), 2), _pick(g, ("sds", "uniform")))

    edges = [("the bottom of DreamFusion's t range", case(torch.tensor([20]))),
             ("the top of DreamFusion's t range", case(torch.tensor([979]))),
             ("t = 0 and t = 999 in one batch", case(torch.tensor([0, 999]))),
             ("guidance scale 1: no guidance", case(torch.tensor([500]), guidance_scale=1.0)),
             ("uniform weighting", case(torch.tensor([300, 700]), weighting="uniform")),
             ("a batch of 4 at its own t each", case(torch.tensor([50, 400, 600, 950]), latents=torch.randn(4, 4, 8, 8, generator=g)))]
    return edges + repeat(3, "random", random)


def _sds_diagnose(got, expected, kwargs):
    grad, carried = (torch.as_tensor(x).detach() for x in got)
    if grad.shape != expected[0].shape:
        return "the gradient has the shape of the latents, [B,4,h,w]."
    if torch.allclose(grad, expected[0], rtol=1e-4, atol=1e-4):
        if carried.abs().max() == 0:
            return ("the loss sends no gradient into the latents: build it from the latents you are given, "
                    "so that backward reaches the renderer; only what stands for the prior's opinion is detached.")
        return ("the loss's gradient must be g itself: autograd must see g (and so the denoiser's output) as a constant, "
                "because SDS skips the U-Net's Jacobian. Check the loss's scale too.")
    if torch.allclose(grad, -expected[0], rtol=1e-4, atol=1e-4):
        return "the sign is flipped: SDS follows the diffusion loss's derivative with the U-Net's Jacobian left out."
    w = sds_weight(kwargs["alphas_cumprod"][kwargs["t"]], kwargs["weighting"]).view(-1, 1, 1, 1)
    if kwargs["weighting"] == "sds" and torch.allclose(grad * w, expected[0], rtol=1e-4, atol=1e-4):
        return "weight each sample by w(t) at its own timestep."
    return ("noise the latents to z_t with the forward process, ask the denoiser at the same t, guide its two "
            "predictions as in exercise 1, and compare with the noise you added.")


def _view_reference(elevation, azimuth):
    return torch.tensor([VIEWS.index(v) for v in view_name(elevation, azimuth)])


def _view_cases(g):
    edges = [("the four sides", dict(elevation=torch.zeros(4), azimuth=torch.tensor([0.0, 90.0, 180.0, 270.0]))),
             ("boundaries and overhead", dict(elevation=torch.tensor([0.0, 0.0, 60.0, 59.0]),
                                              azimuth=torch.tensor([45.0, 135.0, 180.0, 180.0]))),
             ("boundaries on the other side", dict(elevation=torch.tensor([10.0, 10.0, -20.0]), azimuth=torch.tensor([315.0, 225.0, -45.0]))),
             ("azimuths past 360 and below 0", dict(elevation=torch.zeros(3), azimuth=torch.tensor([-30.0, 400.0, 530.0]))),
             ("one camera, from below", dict(elevation=torch.tensor([-80.0]), azimuth=torch.tensor([180.0])))]
    return edges + repeat(3, "random cameras", lambda: dict(elevation=torch.rand(32, generator=g) * 100 - 20,
                                                            azimuth=torch.rand(32, generator=g) * 720 - 360))


def _view_diagnose(got, expected, kwargs):
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return "one index per camera: shape [B]."
    right = got == expected
    if right[(kwargs["azimuth"] >= 0) & (kwargs["azimuth"] < 360)].all():
        return "azimuths wrap around: 400 degrees is 40, and -30 is 330."
    if right[kwargs["elevation"] >= 60].all():
        return ("the overhead cameras are right; for the others, what matters is how far the camera is from the front, "
                "whichever way round, and both boundary angles count as the nearer of front and back. Indices follow VIEWS.")
    return "a camera high enough is overhead whatever its azimuth. Indices follow VIEWS = ('front', 'side', 'back', 'overhead')."


register(Exercise("cfg", "04", _cfg_reference, _cfg_cases, ("noise_pred",), _cfg_diagnose))
register(Exercise("sds_weight", "04", _weight_reference, _weight_cases, ("w",), _weight_diagnose))
register(Exercise("sds_surrogate", "04", _surrogate_reference, _surrogate_cases, ("loss", "latents_grad"),
                  _surrogate_diagnose))
register(Exercise("sds_step", "04", sds_step, _sds_cases, ("grad", "latents_grad"), _sds_diagnose, run=_sds_run))
register(Exercise("view_index", "04", _view_reference, _view_cases, ("view",), _view_diagnose))
