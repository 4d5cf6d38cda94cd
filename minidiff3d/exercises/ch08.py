"""Chapter 08's exercises: MVDream's joint self-attention over the views of a set, the cameras relative to the
set's first view, the camera added to the timestep embedding, and one timestep per set for multi-view SDS, each
checked against the function the package itself uses."""

from __future__ import annotations


import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from ..cameras import orbit_camera
from ..guidance.sds import set_timesteps as sds_timesteps
from ..mvdream import MultiViewAttnProcessor, relative_cameras, ring_azimuths
from ..priors.toy_mvdream import tiny_mvdream
from . import Exercise, register, repeat


def _count(g, low, high):
    return int(torch.randint(low, high, (1,), generator=g))


def _close(a, b, atol=1e-4):
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    return a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=1e-4)


# 1. Joint self-attention

def joint_attention(attn, hidden_states, num_views):
    """Self-attention of ``attn`` over the tokens of all ``num_views`` views of each object (``hidden_states``
    ``[B·V, L, C]``, set after set): the package's processor, as every multi-view U-Net layer runs it."""
    return MultiViewAttnProcessor(num_views)(attn, hidden_states)


def _attention_cases(g):
    def case(sets, views, tokens, heads, dim_head):
        channels = heads * dim_head
        with torch.random.fork_rng(devices=[]):  # the module's own initialisation, drawn aside and replaced
            attn = Attention(query_dim=channels, heads=heads, dim_head=dim_head)
        with torch.no_grad():
            for parameter in attn.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=g) / channels**0.5)
        attn.__name__ = f"Attention(query_dim={channels}, heads={heads}, dim_head={dim_head})"  # its name in messages
        return dict(attn=attn, hidden_states=torch.randn(sets * views, tokens, channels, generator=g), num_views=views)

    edges = [("two sets of four views, 3 tokens each", case(2, 4, 3, 2, 4)),
             ("one set of four views", case(1, 4, 5, 2, 4)),
             ("three sets of two views, one head", case(3, 2, 4, 1, 6)),
             ("one token per view: joint attention is attention across the views", case(2, 3, 1, 2, 2)),
             ("one view per set: the 2-D model's attention", case(3, 1, 4, 2, 4))]

    def random():
        return case(_count(g, 1, 4), _count(g, 1, 5), _count(g, 1, 7), _count(g, 1, 3), _count(g, 2, 5))

    return edges + repeat(4, "random", random)


def _attention_diagnose(got, expected, kwargs):
    attn, x, views = kwargs["attn"], kwargs["hidden_states"], kwargs["num_views"]
    rows, tokens, channels = x.shape
    sets = rows // views
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        if tuple(got.shape) == (sets, views * tokens, channels):
            return "that is the joint layout (B, V·L, C): reshape the output back to the input's (B·V, L, C)."
        return "the output has the input's shape (B·V, L, C): one row per view, as the rest of the U-Net expects."
    attend = AttnProcessor2_0()
    with torch.no_grad():
        per_view = attend(attn, x)
        across = x.reshape(sets, views, tokens, channels).transpose(1, 2).reshape(sets * tokens, views, channels)
        per_position = attend(attn, across).reshape(sets, tokens, views, channels).transpose(1, 2).reshape(x.shape)
        by_view = attend(attn, x.reshape(views, sets * tokens, channels)).reshape(x.shape)
        view_major = x.reshape(views, sets, tokens, channels).transpose(0, 1).reshape(sets, views * tokens, channels)
        view_major = attend(attn, view_major).reshape(sets, views, tokens, channels).transpose(0, 1).reshape(x.shape)
        everything = attend(attn, x.reshape(1, rows * tokens, channels)).reshape(x.shape)
    if _close(got, per_view):
        return ("that is per-view attention, the 2-D model's: each view's L tokens only see each other. Reshape "
                "(B·V, L, C) to (B, V·L, C) before attending, so that one object's V·L tokens attend together.")
    if _close(got, per_position):
        return ("each token only sees the tokens at its own position in the other views, (B·L, V, C): the source "
                "chapter's per-position attention. The same point of the object lands on different pixels in "
                "different views; MVDream lets every token see all V·L tokens of its object: (B, V·L, C).")
    if _close(got, by_view) or _close(got, view_major):
        return ("views and sets are swapped: the batch holds the sets one after another, view after view (rows "
                "b·V to b·V + V - 1 are object b's), so group them as reshape(B, V·L, C); grouping by view "
                "mixes the tokens of different objects.")
    if _close(got, everything):
        return "all the objects' tokens attend together: group them by set, (B, V·L, C), not (1, B·V·L, C)."
    return ("reshape (B·V, L, C) to (B, V·L, C), run the layer's attention on it (AttnProcessor2_0()(attn, x)), "
            "and reshape back to (B·V, L, C).")


# 2. Cameras relative to the set's first view

def _camera_cases(g):
    def case(elevation, azimuth):
        return dict(elevation=torch.as_tensor(elevation, dtype=torch.float32),
                    azimuth=torch.as_tensor(azimuth, dtype=torch.float32))

    edges = [("four views around, starting at 60°", case([15.0] * 4, [60.0, 150.0, 240.0, 330.0])),
             ("a set that wraps past 360°, as System.sample_cameras draws them", case([30.0] * 4, [300.0, 30.0, 120.0, 210.0])),
             ("one view: always at azimuth 0", case([30.0], [123.0])),
             ("a negative start, uneven turns", case([0.0] * 3, [-45.0, 75.0, 400.0])),
             ("the first view at 0: relative is absolute", case([20.0] * 4, ring_azimuths(4))),
             ("from below and from high above", case([-20.0, 60.0], [10.0, 200.0]))]

    def random():
        views = _count(g, 1, 7)
        start = float(torch.rand(1, generator=g)) * 720 - 360
        if torch.rand(1, generator=g) < 0.5:  # a set as the system draws it: one elevation, an even ring
            elevation = torch.full((views,), float(torch.rand(1, generator=g)) * 70 - 10)
            return case(elevation, ring_azimuths(views, start))
        return case(torch.rand(views, generator=g) * 70 - 10, torch.rand(views, generator=g) * 720 - 360)

    return edges + repeat(4, "random", random)


def _camera_diagnose(got, expected, kwargs):
    elevation, azimuth = kwargs["elevation"], kwargs["azimuth"]
    views = len(azimuth)
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        if tuple(got.shape) == (views, 4, 4):
            return "flatten each 4x4 camera-to-world matrix to its 16 numbers, row by row: [V,16]."
        return "one flattened 4x4 camera-to-world matrix per view: [V,16]."
    mats, want = got.detach().double().reshape(views, 4, 4), expected.double().reshape(views, 4, 4)
    if _close(mats.transpose(-1, -2), want):
        return ("flattened column by column: the camera MLP reads the matrix row by row, reshape(V, 16) of the "
                "[V,4,4] itself (not of its transpose).")
    rotation = lambda m: m[:, :3, :3]  # noqa: E731
    place = lambda m: m[:, :3, 3]  # noqa: E731
    distance = place(mats).norm(dim=-1).mean().item()
    if _close(rotation(mats), rotation(want)) and not _close(place(mats), place(want)):
        return (f"the cameras stand {distance:.3g} from the centre (orbit_camera's default radius is 2.8): pass "
                "radius 1. The model's cameras have unit distance, so the size of the orbit does not matter.")
    if _close(rotation(mats), rotation(orbit_camera(elevation, azimuth, 1.0))):
        also = "" if _close(place(mats), place(orbit_camera(elevation, azimuth, 1.0))) else ", and use radius 1"
        return ("these are the absolute azimuths: subtract the first view's azimuth from every view's, so that a set "
                f"and the same set turned about the up axis give the model the same cameras{also}.")
    for k in range(1, views):
        if _close(rotation(mats), rotation(orbit_camera(elevation, azimuth - azimuth[k], 1.0))):
            return (f"the azimuth subtracted is view {k}'s: it is the first view's, azimuth[0], so that view 0 "
                    "stands at azimuth 0.")
    if _close(rotation(mats), rotation(orbit_camera(elevation, azimuth[0] - azimuth, 1.0))):
        return "the turn goes the wrong way: azimuth - azimuth[0], not azimuth[0] - azimuth."
    return "orbit_camera(elevation, azimuth - azimuth[0], 1.0), each [4,4] flattened row by row to [V,16]."


# 3. The camera, added to the timestep embedding

def time_and_camera_embedding(unet, timesteps, cameras):
    """``[N, E]``: what ``unet`` (a multi-view ``UNet2DConditionModel``) adds to every residual block for ``timesteps
    [N]`` and flattened ``cameras [N,16]``, with the calls its own ``forward`` makes (diffusers 0.42)."""
    embedding = unet.time_embedding(unet.get_time_embed(sample=cameras, timestep=timesteps))  # sample: N, dtype
    embedding = embedding + unet.get_class_embed(sample=cameras, class_labels=cameras)
    return embedding if unet.time_embed_act is None else unet.time_embed_act(embedding)


def _embedding_cases(g):
    with torch.random.fork_rng(devices=[]):  # tiny_mvdream seeds the global generator: leave the learner's alone
        unet = tiny_mvdream().unet
    with torch.no_grad():  # the shipped start is zero (the new model starts as the old one): make the camera count
        last = unet.class_embedding.linear_2
        last.weight.copy_(torch.randn(last.weight.shape, generator=g) * 0.5)
        last.bias.copy_(torch.randn(last.bias.shape, generator=g) * 0.1)
    unet.__name__ = "tiny_mvdream().unet"  # its name in messages, not the whole module

    def case(timesteps, cameras):
        return dict(unet=unet, timesteps=torch.as_tensor(timesteps), cameras=torch.as_tensor(cameras, dtype=torch.float32))

    ring = relative_cameras(15.0, ring_azimuths(4))
    edges = [("one set of four views at t = 500", case([500] * 4, ring)),
             ("two sets, one timestep each", case([100] * 4 + [800] * 4, torch.cat([ring, relative_cameras(40.0, ring_azimuths(4))]))),
             ("t = 0 and t = 999", case([0, 999], relative_cameras(0.0, torch.tensor([0.0, 90.0])))),
             ("zero cameras: the camera MLP's biases still count", case([250, 250, 250], torch.zeros(3, 16))),
             ("one view", case([731], relative_cameras(-10.0, torch.tensor([45.0]))))]

    def random():
        n = _count(g, 1, 9)
        return case(torch.randint(0, 1000, (n,), generator=g), torch.randn(n, 16, generator=g))

    return edges + repeat(4, "random", random)


def _embedding_diagnose(got, expected, kwargs):
    unet, t, cameras = kwargs["unet"], kwargs["timesteps"], kwargs["cameras"]
    got = torch.as_tensor(got)
    with torch.no_grad():
        features = unet.time_proj(t).to(cameras.dtype)  # the sinusoidal features of t, [N,16] here
        time, camera = unet.time_embedding(features), unet.class_embedding(cameras)
        candidates = {
            "time": time, "camera": camera,
            "camera MLP on t": time + unet.class_embedding(features),
            "swapped": unet.time_embedding(cameras) + unet.class_embedding(features),
            "camera into time MLP": unet.time_embedding(features + cameras),
        }
    if got.shape != expected.shape:
        if got.shape[-1] == features.shape[-1]:
            return (f"[N,{features.shape[-1]}] is the size of the sinusoidal features unet.time_proj makes: both go "
                    f"through an MLP (unet.time_embedding, unet.class_embedding) to the [N,{expected.shape[-1]}] "
                    "that the residual blocks read.")
        return f"one embedding per view, of the U-Net's time-embedding width: [N,{expected.shape[-1]}]."
    if _close(got, candidates["time"]):
        return ("the camera is missing: that is the timestep embedding alone. Add the camera MLP's output, "
                "unet.class_embedding(cameras), to it. Not to the text embedding, the source chapter's pitfall: only "
                "the cross-attention layers read the text, while the timestep embedding reaches every residual block.")
    if _close(got, candidates["camera"]):
        return ("the timestep is missing: the camera's embedding is added to the timestep embedding, "
                "unet.time_embedding(unet.time_proj(timesteps)), which stays.")
    if _close(got, candidates["camera MLP on t"]):
        return ("the camera MLP got the timestep's sinusoidal features (both are 16 numbers here): its input is the "
                "flattened cameras [N,16], the U-Net's class_labels.")
    if _close(got, candidates["swapped"]):
        return "the two MLPs are swapped: unet.time_embedding takes time_proj(timesteps), unet.class_embedding the cameras."
    if _close(got, candidates["camera into time MLP"]):
        return ("the camera went into the timestep's MLP: it has an MLP of its own, unet.class_embedding, whose output "
                "is added after unet.time_embedding.")
    return "unet.time_embedding(unet.time_proj(timesteps)) + unet.class_embedding(cameras): two MLPs, two inputs, one sum."


# 4. One timestep per set

class _Seed(int):
    """A case's generator, kept as its seed so that the learner and the reference each draw from a fresh one."""

    def __repr__(self):
        return f"torch.Generator().manual_seed({int(self)})"


def set_timesteps(n_sets, num_views, low, high, generator):
    """``[n_sets·V]`` timesteps, one per set, drawn as multi-view SDS draws them (``guidance.sds.set_timesteps``)."""
    return sds_timesteps(n_sets * num_views, num_views, low, high, generator)


def _timestep_run(fn, kwargs):
    return fn(**{**kwargs, "generator": torch.Generator().manual_seed(int(kwargs["generator"]))})


def _timestep_cases(g):
    def case(n_sets, num_views, low, high):
        return dict(n_sets=n_sets, num_views=num_views, low=low, high=high, generator=_Seed(_count(g, 0, 2**31)))

    edges = [("two sets of four views", case(2, 4, 20, 980)),
             ("three sets of four, the whole schedule", case(3, 4, 0, 999)),
             ("views of one: plain SDS, a timestep per image", case(5, 1, 20, 980)),
             ("one set of six views", case(1, 6, 200, 500)),
             ("a range of one timestep: low = high", case(3, 2, 500, 500))]

    def random():
        low = _count(g, 0, 600)
        return case(_count(g, 1, 6), _count(g, 1, 7), low, _count(g, low, 1000))

    return edges + repeat(4, "random", random)


def _timestep_diagnose(got, expected, kwargs):
    n, views, low, high = kwargs["n_sets"], kwargs["num_views"], kwargs["low"], kwargs["high"]
    fresh = lambda: torch.Generator().manual_seed(int(kwargs["generator"]))  # noqa: E731
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        if tuple(got.shape) == (n,):
            return "one timestep per view, n_sets·V of them: repeat each set's for its V views."
        if tuple(got.shape) == (n, views):
            return "flatten to [n_sets·V], set after set, as the renders come."
        return f"one timestep per view, n_sets·V of them: [{n * views}]."
    draw = torch.randint(low, high + 1, (n,), generator=fresh())
    if views > 1 and n > 1 and torch.equal(got.long(), draw.repeat(views)):
        return ("the sets are interleaved: repeat tiles the whole draw V times (t0, t1, t0, t1, ...); "
                "repeat_interleave gives each set's timestep to its own V views (t0, t0, ..., t1, t1, ...).")
    if views > 1 and not (got.reshape(n, views) == got.reshape(n, views)[:, :1]).all():
        return ("the views of one set are at different noise levels: the joint denoiser was trained on sets noised at "
                "one t, so draw one timestep per set and repeat it for its views.")
    if high > low and torch.equal(got.long(), torch.randint(low, high, (n,), generator=fresh()).repeat_interleave(views)):
        return "high is included: torch.randint's upper bound is exclusive, so draw from randint(low, high + 1, ...)."
    if got.min() < low or got.max() > high:
        return f"the timesteps lie in [low, high] = [{low}, {high}], both ends included."
    return ("one draw, torch.randint(low, high + 1, (n_sets,), generator=generator), nothing drawn before it, then "
            "repeat_interleave(num_views).")


register(Exercise("joint_attention", "08", joint_attention, _attention_cases, ("hidden_states",), _attention_diagnose))
register(Exercise("relative_cameras", "08", relative_cameras, _camera_cases, ("cameras",), _camera_diagnose))
register(Exercise("time_and_camera_embedding", "08", time_and_camera_embedding, _embedding_cases, ("embedding",),
                  _embedding_diagnose))
register(Exercise("set_timesteps", "08", set_timesteps, _timestep_cases, ("timesteps",), _timestep_diagnose,
                  run=_timestep_run))
