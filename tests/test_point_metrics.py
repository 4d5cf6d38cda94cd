"""Point-cloud metrics against hand-computed values and brute-force references."""

import itertools

import pytest
import torch

from minidiff3d.metrics import (chamfer_distance, earth_movers_distance, evaluate_point_clouds, normalize_bounding_box,
                                nearest_class_accuracy, one_nn_accuracy, pairwise_distances)


def brute_chamfer(a, b):
    d = (a[:, None] - b[None]).square().sum(-1)
    return d.min(1).values.mean() + d.min(0).values.mean()


def test_chamfer_hand_computed():
    a = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
    b = torch.tensor([[[0.0, 0, 0], [0, 2, 0]]])
    # a->b: 0 and 1 (mean 0.5); b->a: 0 and 4 (mean 2)
    assert chamfer_distance(a, b).item() == pytest.approx(2.5)


def test_chamfer_matches_brute_force_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 50, 3, generator=g), torch.rand(3, 70, 3, generator=g)
    ours = chamfer_distance(a, b)
    torch.testing.assert_close(ours, torch.stack([brute_chamfer(x, y) for x, y in zip(a, b)]), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours, chamfer_distance(b, a))
    assert chamfer_distance(a, a).abs().max() < 1e-6


def test_pairwise_chamfer_by_kd_trees_matches_the_dense_computation():
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(3, 40, 3, generator=g), torch.rand(4, 25, 3, generator=g)  # sets and clouds of different sizes
    dense = torch.stack([chamfer_distance(a.expand(4, -1, -1), y) for a in x])
    torch.testing.assert_close(pairwise_distances(x, y), dense, rtol=1e-5, atol=1e-7)
    within = pairwise_distances(x, x)  # a set against itself takes the symmetric shortcut
    torch.testing.assert_close(within, pairwise_distances(x, x.clone()), rtol=1e-6, atol=0.0)
    torch.testing.assert_close(within, within.T)
    torch.testing.assert_close(within.diagonal(), torch.zeros(3))


def test_emd_hand_computed_and_brute_force():
    a = torch.tensor([[[0.0, 0, 0], [2, 0, 0]]])
    b = torch.tensor([[[3.0, 0, 0], [1, 0, 0]]])
    assert earth_movers_distance(a, b).item() == pytest.approx(1.0)  # 0->1, 2->3
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(1, 6, 3, generator=g), torch.rand(1, 6, 3, generator=g)
    d = torch.cdist(x[0].double(), y[0].double())
    best = min(sum(d[i, p[i]] for i in range(6)) / 6 for p in itertools.permutations(range(6)))
    assert earth_movers_distance(x, y).item() == pytest.approx(best.item(), rel=1e-5)


def test_emd_subsamples_large_clouds_and_stays_close():
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(1, 400, 3, generator=g), torch.rand(1, 400, 3, generator=g)
    exact, approx = earth_movers_distance(x, y, max_points=400), earth_movers_distance(x, y, max_points=200)
    assert approx.item() >= exact.item() * 0.95 and approx.item() < exact.item() * 1.5
    assert earth_movers_distance(x, x, max_points=100).item() == pytest.approx(0.0)


def test_normalize_bounding_box_fits_longest_side_to_two():
    cloud = torch.tensor([[[1.0, 1, 1], [3, 2, 1.5]]])
    out = normalize_bounding_box(cloud)
    torch.testing.assert_close(out.amax(1) + out.amin(1), torch.zeros(1, 3))
    assert (out.amax(1) - out.amin(1)).max().item() == pytest.approx(2.0)


def _blobs(n, centre, seed, points=64):
    g = torch.Generator().manual_seed(seed)
    scale = 0.2 + 0.1 * torch.rand(n, 1, 3, generator=g)  # shapes differ in their proportions
    return centre + scale * torch.randn(n, points, 3, generator=g)


def test_one_nna_is_one_for_separated_sets_and_about_half_for_one_distribution():
    near, far = _blobs(20, 0.0, 0), _blobs(20, 5.0, 1)
    d = lambda x, y: pairwise_distances(x, y)
    assert one_nn_accuracy(d(near, near), d(near, far), d(far, far)) == 1.0
    same_a, same_b = _blobs(60, 0.0, 2), _blobs(60, 0.0, 3)
    assert abs(one_nn_accuracy(d(same_a, same_a), d(same_a, same_b), d(same_b, same_b)) - 0.5) < 0.15


def test_memorised_samples_give_one_nna_zero_mmd_zero_and_full_coverage():
    refs = _blobs(10, 0.0, 4)
    scores = evaluate_point_clouds(refs.clone(), refs, metrics=("CD",))
    assert scores == {"MMD-CD": pytest.approx(0.0, abs=1e-6), "COV-CD": 1.0, "1-NNA-CD": 0.0}


def test_one_sample_repeated_covers_one_reference():
    refs = _blobs(8, 0.0, 5)
    samples = refs[3:4].expand(5, -1, -1).clone()
    scores = evaluate_point_clouds(samples, refs)
    assert scores["COV-CD"] == pytest.approx(1 / 8) and scores["COV-EMD"] == pytest.approx(1 / 8)


def _line_distances(x, y):
    """Distance matrices of points on a line, as one_nn_accuracy takes them."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    return (x[:, None] - x).abs(), (x[:, None] - y).abs(), (y[:, None] - y).abs()


def test_one_nna_by_hand():
    # Nearest other point: 0->1, 1->0 (own set); 10->13 (Y, wrong); 5->6, 6->5 (own set); 13->10 (X, wrong).
    assert one_nn_accuracy(*_line_distances([0.0, 1.0, 10.0], [5.0, 6.0, 13.0])) == pytest.approx(4 / 6)
    # A copy of a set: each point's nearest is its twin in the other set, so every label is wrong.
    assert one_nn_accuracy(*_line_distances([0.0, 1.0, 3.0], [0.0, 1.0, 3.0])) == 0.0
    assert one_nn_accuracy(*_line_distances([0.0, 1.0, 2.0], [10.0, 11.0])) == 1.0


def test_mmd_against_hand_computed_nearest_sample():
    refs = torch.tensor([[[0.0, 0, 0], [1, 0, 0]], [[0.0, 0, 0], [0, 2, 0]]])
    samples = refs[:1].clone()
    scores = evaluate_point_clouds(samples, refs, metrics=("CD",), normalize=False)
    assert scores["MMD-CD"] == pytest.approx((0 + 2.5) / 2)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: chamfer_distance(torch.rand(2, 5, 2), torch.rand(2, 5, 3)), r"a: expected shape \[B, N, 3\], got \[2, 5, 2\]"),
        (lambda: chamfer_distance(torch.rand(2, 5, 3), torch.rand(3, 5, 3)), r"b: expected shape \[2, M, 3\], got \[3, 5, 3\]"),
        (lambda: chamfer_distance(torch.full((1, 4, 3), float("nan")), torch.rand(1, 4, 3)), "a: expected finite values"),
        (lambda: earth_movers_distance(torch.rand(1, 5, 3), torch.rand(1, 6, 3)), r"b: expected shape \[1, 5, 3\]"),
        (lambda: evaluate_point_clouds(torch.rand(2, 5, 3), torch.rand(2, 5, 3), metrics=("F1",)), "metrics: expected one of"),
        (lambda: one_nn_accuracy(torch.rand(2, 2), torch.rand(2, 3), torch.rand(2, 2)), r"d_yy: expected shape \[Y, Y\] with Y=3"),
        (lambda: one_nn_accuracy(torch.rand(3, 3), torch.rand(2, 3), torch.rand(3, 3)), r"d_xx: expected shape \[X, X\] with X=2"),
        (lambda: one_nn_accuracy(torch.rand(2, 2), torch.rand(2, 0), torch.rand(0, 0)), "d_xy: expected at least one cloud in each set"),
        (lambda: one_nn_accuracy(torch.rand(2, 2), torch.full((2, 2), float("nan")), torch.rand(2, 2)), "d_xy: expected finite values"),
        (lambda: one_nn_accuracy(-torch.rand(2, 2), torch.rand(2, 2), torch.rand(2, 2)), "d_xx: expected non-negative distances"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_nearest_class_accuracy_by_hand():
    g = torch.Generator().manual_seed(0)
    sphere = torch.nn.functional.normalize(torch.randn(1, 256, 3, generator=g), dim=-1)
    line = torch.zeros(1, 256, 3)
    line[..., 0] = torch.linspace(-1, 1, 256)
    slab = torch.rand(1, 256, 3, generator=g) * torch.tensor([2.0, 2.0, 0.05]) - torch.tensor([1.0, 1.0, 0.025])
    refs, ref_labels = torch.cat([sphere, line, slab]), torch.tensor([0, 1, 2])
    samples = refs + 0.01 * torch.randn(refs.shape, generator=g)
    assert nearest_class_accuracy(samples, ref_labels, refs, ref_labels) == 1.0
    assert nearest_class_accuracy(samples, (ref_labels + 1) % 3, refs, ref_labels) == 0.0  # a model that ignores its label
    assert nearest_class_accuracy(samples[[0, 0, 2]], ref_labels, refs, ref_labels) == pytest.approx(2 / 3)  # a sphere asked for a line
    with pytest.raises(ValueError, match=r"sample_labels: expected shape \[3\], one label per cloud, got \[2\]"):
        nearest_class_accuracy(samples, ref_labels[:2], refs, ref_labels)
