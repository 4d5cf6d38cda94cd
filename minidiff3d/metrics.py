"""Quality metrics: images (PSNR, SSIM), point-cloud sets (Chamfer, EMD, MMD, COV, 1-NNA) and sampled meshes."""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from .validation import check_choice, check_images, check_positive, check_positive_int, check_tensor


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB over all entries: ``10 log10(range^2 / MSE)``.

    ``pred`` and ``target`` must have the same shape (no broadcasting); identical inputs give inf.
    """
    target = check_tensor("target", target, floating=True)
    pred = check_tensor("pred", pred, shape=list(target.shape), floating=True)
    mse = (pred - target).double().square().mean()
    return (10 * torch.log10(check_positive("data_range", data_range) ** 2 / mse)).float()


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity of images ``[H,W,3]`` (or ``[H,W]``), Wang et al. 2004.

    Local means, variances and covariance under an 11x11 Gaussian window (σ = 1.5), with
    ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2``; the mean over valid windows and channels.
    """
    target = check_tensor("target", target, floating=True)
    pred = check_tensor("pred", pred, shape=list(target.shape), floating=True)
    if target.ndim not in (2, 3) or min(target.shape[:2]) < window:
        raise ValueError(f"target: expected an image [H,W] or [H,W,C] with H, W ≥ {window}, got {list(target.shape)}")
    to_bchw = lambda x: (x[..., None] if x.ndim == 2 else x).permute(2, 0, 1)[:, None].double()  # [C,1,H,W]
    x, y = to_bchw(pred), to_bchw(target)
    g = _gaussian_window(window, sigma)
    blur = lambda z: torch.nn.functional.conv2d(torch.nn.functional.conv2d(z, g[None, None, :, None]), g[None, None, None, :])
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.mean().float()


# ---------------------------------------------------------------- point clouds


def _check_clouds(name: str, clouds: torch.Tensor) -> torch.Tensor:
    return check_tensor(name, clouds, shape=["B", "N", 3], floating=True)


def chamfer_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Chamfer distance ``[B]`` between clouds ``a [B,N,3]`` and ``b [B,M,3]``.

    Squared nearest-neighbour distances, averaged in each direction, then summed:
    ``mean_i min_j |a_i - b_j|^2 + mean_j min_i |a_i - b_j|^2``.
    """
    a = _check_clouds("a", a)
    b = check_tensor("b", b, shape=[a.shape[0], "M", 3], floating=True)
    # cdist's matrix-product path is fast; in float32 its rounding (~1e-7 of |x|^2) is far below
    # the distances that matter here for clouds of unit size.
    squared = torch.cdist(a, b).square()  # [B,N,M]
    return squared.min(2).values.mean(1) + squared.min(1).values.mean(1)


def earth_movers_distance(a: torch.Tensor, b: torch.Tensor, max_points: int = 512, seed: int = 0) -> torch.Tensor:
    """Earth mover's distance ``[B]`` between equal-size clouds ``a, b [B,N,3]``.

    The mean Euclidean distance between matched points under the best one-to-one matching,
    solved exactly by the Hungarian algorithm (scipy's ``linear_sum_assignment``).

    Approximation for large sets: the exact matching costs O(N^3), so clouds with more than
    ``max_points`` points are first subsampled to ``max_points`` random points (the same
    indices for every cloud, from ``seed``). The subsampled EMD is a consistent estimate that
    is biased slightly upwards (a sparser sample has farther matches); compare numbers only at
    the same ``max_points``.
    """
    a = _check_clouds("a", a)
    b = check_tensor("b", b, shape=list(a.shape), floating=True)
    max_points = check_positive_int("max_points", max_points)
    if a.shape[1] > max_points:
        keep = torch.randperm(a.shape[1], generator=torch.Generator().manual_seed(seed))[:max_points]
        a, b = a[:, keep], b[:, keep]
    costs = torch.cdist(a.double(), b.double()).cpu().numpy()
    matched = [cost[linear_sum_assignment(cost)].mean() for cost in costs]
    return torch.tensor(np.array(matched), dtype=a.dtype)


def normalize_bounding_box(clouds: torch.Tensor) -> torch.Tensor:
    """Centre each cloud ``[B,N,3]`` on its bounding box and scale its longest side to 2 (into [-1,1])."""
    clouds = _check_clouds("clouds", clouds)
    lo, hi = clouds.min(1, keepdim=True).values, clouds.max(1, keepdim=True).values
    scale = (hi - lo).amax(-1, keepdim=True).clamp(min=1e-12) / 2
    return (clouds - (lo + hi) / 2) / scale


def pairwise_distances(x: torch.Tensor, y: torch.Tensor, metric: str = "CD", emd_max_points: int = 512) -> torch.Tensor:
    """``[X,Y]`` distances between every cloud of ``x [X,N,3]`` and of ``y [Y,M,3]`` ("CD" or "EMD"), without gradients.

    Chamfer uses one k-d tree per cloud (scipy's ``cKDTree``, exact nearest neighbours): O(N log M)
    per pair instead of the N·M distance matrix. Each tree is queried once with the points of
    every cloud of the other set, on all cores, so a 1-NNA over hundreds of clouds takes seconds.
    """
    check_choice("metric", metric, ("CD", "EMD"))
    same = y is x  # a set against itself (1-NNA's within-set distances): the matrix is symmetric
    x, y = _check_clouds("x", x).detach().cpu(), _check_clouds("y", y).detach().cpu()
    if metric == "EMD":
        return torch.stack([earth_movers_distance(cloud.expand(len(y), -1, -1), y, max_points=emd_max_points) for cloud in x])
    x_np, y_np = x.double().numpy(), y.double().numpy()

    def mean_nearest_sq(targets: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """``[T,Q]``: for each target cloud, the mean squared distance from each query cloud's points to it."""
        flat = queries.reshape(-1, 3)
        return np.stack([np.square(cKDTree(cloud).query(flat, workers=-1)[0]).reshape(len(queries), -1).mean(1)
                         for cloud in targets])

    y_to_x = mean_nearest_sq(x_np, y_np)
    x_to_y = y_to_x if same else mean_nearest_sq(y_np, x_np)
    return torch.from_numpy(x_to_y.T + y_to_x).to(x.dtype)


def one_nn_accuracy(d_xx: torch.Tensor, d_xy: torch.Tensor, d_yy: torch.Tensor) -> float:
    """1-NNA from distance matrices ``[X,X]``, ``[X,Y]``, ``[Y,Y]``: leave-one-out 1-NN classification accuracy.

    Each cloud of the union is labelled by its nearest other cloud; the accuracy is the fraction
    labelled with its own set. 0.5 means the two sets cannot be told apart; 1 means fully separated.
    Both sets need at least one cloud, and distances are finite and non-negative.
    """
    sizes: dict[str, int] = {}
    d_xy = check_tensor("d_xy", d_xy, shape=["X", "Y"], sizes=sizes, floating=True)
    d_xx = check_tensor("d_xx", d_xx, shape=["X", "X"], sizes=sizes, floating=True)
    d_yy = check_tensor("d_yy", d_yy, shape=["Y", "Y"], sizes=sizes, floating=True)
    n_x, n_y = d_xy.shape
    if not n_x or not n_y:
        raise ValueError(f"d_xy: expected at least one cloud in each set, got shape {[n_x, n_y]}")
    for name, d in (("d_xx", d_xx), ("d_xy", d_xy), ("d_yy", d_yy)):
        if (d < 0).any():
            raise ValueError(f"{name}: expected non-negative distances, got a minimum of {d.min().item():.4g}")
    top = torch.cat([d_xx, d_xy], 1)
    bottom = torch.cat([d_xy.T, d_yy], 1)
    full = torch.cat([top, bottom], 0).clone()
    full.fill_diagonal_(float("inf"))  # leave one out
    nearest = full.argmin(1)
    labels = torch.cat([torch.zeros(n_x, dtype=torch.bool), torch.ones(n_y, dtype=torch.bool)])
    return (labels[nearest] == labels).float().mean().item()


def evaluate_point_clouds(samples: torch.Tensor, refs: torch.Tensor, metrics=("CD", "EMD"), normalize: bool = True,
                          emd_max_points: int = 512) -> dict[str, float]:
    """Generation quality of ``samples [S,N,3]`` against a reference set ``refs [R,N,3]``, as PointFlow defines it.

    For each distance D in ``metrics``:

    * ``MMD-D``: for each reference, the distance to its closest sample, averaged (fidelity; lower is better).
    * ``COV-D``: the fraction of references that are the closest reference of at least one sample
      (diversity; higher is better, at most ``S/R``).
    * ``1-NNA-D``: leave-one-out 1-NN accuracy on the union (in [0,1]; ideal 0.5).

    With ``normalize``, every cloud is first fitted to [-1,1] by its bounding box, so the scores
    judge shape, not placement or scale.
    """
    samples = _check_clouds("samples", samples)
    refs = check_tensor("refs", refs, shape=["R", samples.shape[1], 3], floating=True)
    if normalize:
        samples, refs = normalize_bounding_box(samples), normalize_bounding_box(refs)
    scores = {}
    for metric in metrics:
        check_choice("metrics", metric, ("CD", "EMD"))
        pairs = lambda x, y: pairwise_distances(x, y, metric, emd_max_points)
        d_sr = pairs(samples, refs)
        scores[f"MMD-{metric}"] = d_sr.min(0).values.mean().item()
        scores[f"COV-{metric}"] = d_sr.argmin(1).unique().numel() / len(refs)
        scores[f"1-NNA-{metric}"] = one_nn_accuracy(pairs(samples, samples), d_sr, pairs(refs, refs))
    return scores


def evaluate_meshes(meshes, refs: torch.Tensor, metrics=("CD",), normalize: bool = True, seed: int = 0) -> dict[str, float]:
    """Quality of generated ``meshes`` (trimesh meshes, ``None`` for a failed sample) against ``refs [R,N,3]``.

    ``watertight`` is the fraction of all meshes that are closed manifolds (``None`` counts as
    not); ``pieces`` is the mean number of connected components of those with a surface, which
    exposes floaters that watertightness alone hides; ``one_piece`` is the fraction of all meshes
    that are both watertight and one piece (padded marching cubes closes every surface, so even
    random grids are watertight; they are rarely one piece). Each mesh with a surface is sampled with N points by area, and those clouds are
    scored by ``evaluate_point_clouds``; ``surface`` is the fraction that had one.
    """
    meshes = list(meshes)
    if not meshes:
        raise ValueError("meshes: expected at least one mesh, got none")
    refs = _check_clouds("refs", refs)
    usable = [m for m in meshes if m is not None and len(m.faces) > 0]
    scores = {"watertight": sum(m.is_watertight for m in usable) / len(meshes), "surface": len(usable) / len(meshes)}
    if usable:
        pieces = [len(m.split(only_watertight=False)) for m in usable]
        scores["pieces"] = sum(pieces) / len(usable)
        scores["one_piece"] = sum(m.is_watertight and n == 1 for m, n in zip(usable, pieces)) / len(meshes)
        clouds = torch.stack([torch.as_tensor(trimesh.sample.sample_surface(m, refs.shape[1], seed=seed + i)[0], dtype=refs.dtype)
                              for i, m in enumerate(usable)])
        scores.update(evaluate_point_clouds(clouds, refs, metrics, normalize))
    return scores


def nearest_class_accuracy(samples: torch.Tensor, sample_labels: torch.Tensor, refs: torch.Tensor, ref_labels: torch.Tensor,
                           normalize: bool = True) -> float:
    """The fraction of ``samples [S,N,3]`` whose nearest reference in ``refs [R,M,3]`` (Chamfer) has the sample's label.

    A distance to the sample's own class alone cannot tell a class-conditional model from one that
    ignores its label and draws good shapes of any class; this can: such a model scores about
    1 / the number of classes. Labels are ``[S]`` and ``[R]`` integers.
    """
    samples, refs = _check_clouds("samples", samples), _check_clouds("refs", refs)
    for name, labels, clouds in (("sample_labels", sample_labels, samples), ("ref_labels", ref_labels, refs)):
        if labels.shape != (len(clouds),):
            raise ValueError(f"{name}: expected shape [{len(clouds)}], one label per cloud, got {list(labels.shape)}")
    if normalize:
        samples, refs = normalize_bounding_box(samples), normalize_bounding_box(refs)
    nearest = pairwise_distances(samples, refs).argmin(1)
    return (ref_labels[nearest] == sample_labels).float().mean().item()


def _default_clip(clip):
    if clip is not None:
        return clip
    from .priors import load  # here, so that importing the metrics does not import transformers

    return load("toy-clip")


@torch.no_grad()
def r_precision(images: torch.Tensor, captions: list[str], candidates: list[str], clip=None, batch_size: int = 256) -> float:
    """DreamFusion's R-precision: the fraction of ``images [B,3,H,W]`` (in [0,1]) whose own caption
    ranks first, by CLIP similarity, among ``candidates``.

    ``captions[b]`` is image b's true caption and must be one of ``candidates``; ``clip`` is a
    ``minidiff3d.priors.CLIP`` (default: the shipped toy CLIP).
    """
    images = check_images("images", images)
    if len(captions) != len(images):
        raise ValueError(f"captions: expected one per image ({len(images)}), got {len(captions)}")
    candidates = list(candidates)
    missing = sorted(set(captions) - set(candidates))
    if missing:
        raise ValueError(f"captions: expected each to be one of the candidates, got {missing[:3]} not among them")
    clip = _default_clip(clip)
    texts = clip.embed_texts(candidates)
    best = torch.cat([(clip.embed_images(chunk) @ texts.T).argmax(1).cpu() for chunk in images.split(batch_size)])
    truth = torch.tensor([candidates.index(c) for c in captions])
    return (best == truth).float().mean().item()


def saturation(images: torch.Tensor) -> float:
    """Mean HSV saturation, ``(max - min) / max`` per pixel, of ``images [B,3,H,W]`` in [0,1].

    Over-guided SDS results are garish: large CFG scales push colours to the gamut's edge.
    """
    images = check_images("images", images)
    high, low = images.max(1).values, images.min(1).values
    return ((high - low) / high.clamp(min=1e-6)).mean().item()


def laplacian_energy(images: torch.Tensor) -> float:
    """Sharpness: the mean square of the 5-point Laplacian of the luminance of ``images [B,3,H,W]`` in [0,1]
    (valid pixels only, no padding). 0 for a flat image; edges and fine texture raise it, blur lowers it."""
    images = check_images("images", images)
    if min(images.shape[-2:]) < 3:
        raise ValueError(f"images: expected at least 3x3 pixels for the Laplacian, got {list(images.shape[-2:])}")
    grey = (images * images.new_tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1)  # ITU-R BT.601 luma
    laplacian = (grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] - 4 * grey[:, 1:-1, 1:-1])
    return laplacian.square().mean().item()


@torch.no_grad()
def clip_diversity(images: torch.Tensor, clip) -> float:
    """1 - the mean pairwise cosine similarity of CLIP embeddings of ``images [B,3,H,W]`` (B ≥ 2).

    0 when every image is the same to CLIP; mode-seeking (SDS) lowers it, sampling keeps it up.
    """
    images = check_images("images", images)
    if len(images) < 2:
        raise ValueError(f"images: expected at least 2 images to compare, got {len(images)}")
    embeddings = clip.embed_images(images)
    similarity = embeddings @ embeddings.T
    n = len(images)
    return 1.0 - ((similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1))).item()


@torch.no_grad()
def janus_rate(back_renders: torch.Tensor, prompt: str, clip=None) -> float:
    """The fraction of renders from behind (azimuth 180) that CLIP takes for a front view of ``prompt``.

    For an object with a front (a duck's head, a mug's handle), a render from behind that looks
    like its front means a second face: the Janus problem. CLIP chooses among
    "<prompt>, front view", "..., side view" and "..., back view".
    """
    from .priors.captions import with_view

    back_renders = check_images("back_renders", back_renders)
    texts = [with_view(prompt, view) for view in ("front", "side", "back")]
    chosen = _default_clip(clip).similarity(back_renders, texts).argmax(1)
    return (chosen == 0).float().mean().item()


def front_view(images: torch.Tensor, prompt: str, clip=None) -> int:
    """The index of the one of ``images [N,3,H,W]`` (views of one object) that CLIP most takes for its front: the
    highest probability of "<prompt>, front view" against side and back. Where an object faces, whatever the world's
    azimuth 0 is."""
    from .priors.captions import with_view

    images = check_images("images", images)
    texts = [with_view(prompt, view) for view in ("front", "side", "back")]
    return int(_default_clip(clip).similarity(images, texts).softmax(1)[:, 0].argmax())


def view_consistency(views: torch.Tensor, prompts: list[str], elevation: float, azimuths, clip=None) -> float:
    """How well each set of ``views [B,V,3,H,W]`` shows one object: the fraction of its views whose view word CLIP
    picks ("<prompt>, front view" against side, back and overhead) is the one its camera has, for the object's
    best turn among the V turns of the ring (its front facing camera k, for each k).

    The V cameras are at ``elevation`` and ``azimuths [V]`` (degrees), evenly spaced around the object. Up to a
    turn, because a multi-view prior whose cameras are relative to the first view does not know which side is the
    front: a consistent set is any turn of (front, side, back, side). A set with a face on two sides scores lower;
    four copies of a front view score 1/4. ``prompts``: one per set.
    """
    from .priors.captions import VIEWS, view_name, with_view

    views = check_images("views", views.flatten(0, 1) if views.dim() == 5 else views).reshape(views.shape)
    check_tensor("views", views, shape=[len(prompts), None, 3, None, None])
    count = views.shape[1]
    azimuths = torch.as_tensor(azimuths, dtype=torch.float32).reshape(-1)
    steps = (azimuths.roll(-1) - azimuths) % 360
    if len(azimuths) != count or not torch.allclose(steps, torch.full_like(steps, 360.0 / count), atol=1e-3):
        raise ValueError(f"azimuths: expected {count} azimuths evenly around the object (one per view), "
                         f"got {azimuths.tolist()}")
    turns = [view_name(torch.full((count,), float(elevation)), azimuths - azimuths[k]) for k in range(count)]
    clip = _default_clip(clip)
    scores = []
    for prompt, images in zip(prompts, views):
        chosen = [VIEWS[i] for i in clip.similarity(images, [with_view(prompt, v) for v in VIEWS]).argmax(1).tolist()]
        scores.append(max(sum(c == e for c, e in zip(chosen, expected)) for expected in turns) / count)
    return sum(scores) / len(scores)
