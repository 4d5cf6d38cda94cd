import pytest
import torch

from minidiff3d.fields import HashGridEncoding, HashGridNeRF, NeRF, PositionalEncoding, spatial_hash
from minidiff3d.scene import DensityField


def test_encoding_widths():
    assert PositionalEncoding(3, 10).out_dim == 63 and PositionalEncoding(3, 4).out_dim == 27
    assert PositionalEncoding(3, 10)(torch.zeros(5, 3)).shape == (5, 63)
    assert PositionalEncoding(2, 3, include_input=False).out_dim == 12


def test_positional_encoding_hand_computed():
    x = torch.tensor([[0.25, 0.5]])
    out = PositionalEncoding(2, 2)(x)
    pi = torch.pi
    expected = torch.tensor([[0.25, 0.5, torch.sin(torch.tensor(pi / 4)), torch.sin(torch.tensor(pi / 2)),
                              torch.cos(torch.tensor(pi / 4)), torch.cos(torch.tensor(pi / 2)),
                              torch.sin(torch.tensor(pi / 2)), torch.sin(torch.tensor(pi)),
                              torch.cos(torch.tensor(pi / 2)), torch.cos(torch.tensor(pi))]])
    assert torch.allclose(out, expected, atol=1e-6)


def test_spatial_hash_matches_hand_computed_values():
    # (i*1 ^ j*2654435761 ^ k*805459861) mod 2^32, worked out with Python's big integers
    def reference(i, j, k, table):
        return ((i * 1) % 2**32 ^ (j * 2654435761) % 2**32 ^ (k * 805459861) % 2**32) % table

    ijk = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 7, 11], [1000, 2000, 3000], [4095, 4095, 4095]])
    got = spatial_hash(ijk, 2**19)
    assert got.tolist() == [reference(*map(int, row), 2**19) for row in ijk]
    assert got[2].item() == 2654435761 % 2**19 and got[3].item() == 805459861 % 2**19
    with pytest.raises(TypeError, match="ijk: expected an integer tensor"):
        spatial_hash(torch.zeros(2, 3), 16)


def test_hash_grid_levels_grow_geometrically_and_coarse_levels_are_dense():
    enc = HashGridEncoding(n_levels=8, n_features=2, log2_table_size=12, base_resolution=4, finest_resolution=128)
    assert enc.resolutions[0] == 4 and enc.resolutions[-1] in (127, 128)
    assert enc.dense[0] and not enc.dense[-1]
    assert enc(torch.rand(10, 3) * 2 - 1).shape == (10, 16)


def test_hash_grid_rejects_a_bad_resolution_by_name():
    with pytest.raises(ValueError, match="base_resolution: expected a positive integer, got 0"):
        HashGridEncoding(base_resolution=0)
    with pytest.raises(ValueError, match="finest_resolution: expected ≥ base_resolution=16, got 8"):
        HashGridEncoding(base_resolution=16, finest_resolution=8)
    with pytest.raises(ValueError, match=r"bounds: expected finite \(low, high\) with low < high, got \(0.5, 0.5\)"):
        HashGridEncoding(bounds=(0.5, 0.5))  # features of NaN otherwise
    with pytest.raises(ValueError, match="num_freqs: expected a non-negative integer, got 2.5"):
        PositionalEncoding(3, 2.5)  # out_dim would not be the output's width


def test_hash_grid_features_are_continuous_across_cell_borders():
    enc = HashGridEncoding(n_levels=4, n_features=2, log2_table_size=10, base_resolution=4, finest_resolution=32)
    for table in enc.tables:
        torch.nn.init.uniform_(table, -1, 1)
    # a border of the finest level along x, approached from both sides
    border = -1 + 2 * 5 / enc.resolutions[-1]
    eps = 1e-5
    left = enc(torch.tensor([[border - eps, 0.13, -0.41]]))
    right = enc(torch.tensor([[border + eps, 0.13, -0.41]]))
    assert (left - right).abs().max() < 1e-3
    far = enc(torch.tensor([[border + 0.05, 0.13, -0.41]]))
    assert (left - far).abs().max() > 1e-3  # and the features do change


def test_nerf_skip_connection_goes_where_configured():
    for skip in (2, 5):
        model = NeRF(hidden_dim=32, num_layers=8, skip_layer=skip)
        widths = [layer.in_features for layer in model.trunk]
        assert widths[skip] == 32 + 63 and all(w in (63, 32) for i, w in enumerate(widths) if i != skip)
        out = model(torch.rand(7, 3), torch.nn.functional.normalize(torch.randn(7, 3), dim=-1))
        assert out["rgb"].shape == (7, 3) and out["density"].shape == (7,) and (out["density"] >= 0).all()
    with pytest.raises(ValueError, match="skip_layer: expected None or an index in 1..7, got 9"):
        NeRF(skip_layer=9)


def test_nerf_colour_depends_on_direction_and_density_does_not():
    model = NeRF(hidden_dim=32)
    torch.nn.init.normal_(model.sigma_head.bias, 1.0)
    x = torch.rand(4, 3)
    d1, d2 = torch.tensor([[0.0, 0, 1]]).expand(4, 3), torch.tensor([[1.0, 0, 0]]).expand(4, 3)
    one, two = model(x, d1), model(x, d2)
    assert torch.equal(one["density"], two["density"]) and not torch.allclose(one["rgb"], two["rgb"])


@pytest.mark.parametrize("make", [lambda: NeRF(hidden_dim=32), HashGridNeRF, DensityField], ids=["NeRF", "HashGridNeRF", "DensityField"])
def test_every_field_keeps_the_one_contract(make):
    # field(points, directions) -> {"density": [N] >= 0, "rgb": [N,3] in [0,1]}, and density(points) agrees with it.
    torch.manual_seed(0)
    model = make()
    points = torch.rand(9, 3) * 1.6 - 0.8
    directions = torch.nn.functional.normalize(torch.randn(9, 3), dim=-1)
    out = model(points, directions)
    assert set(out) == {"density", "rgb"} and out["density"].shape == (9,) and out["rgb"].shape == (9, 3)
    assert (out["density"] >= 0).all() and ((out["rgb"] >= 0) & (out["rgb"] <= 1)).all()
    assert torch.equal(model.density(points), out["density"])
    with pytest.raises(ValueError, match=r"points: expected shape \[N, 3\]"):
        model.density(torch.rand(9, 2))


def test_hash_grid_nerf_names_mismatched_directions():
    with pytest.raises(ValueError, match=r"directions: expected shape \[9, 3\], got \[8, 3\]"):
        HashGridNeRF()(torch.rand(9, 3), torch.rand(8, 3))


def test_dense_level_matches_an_explicit_trilinear_gather():
    from minidiff3d.fields import interpolate_level

    g = torch.Generator().manual_seed(0)
    resolution, stride = 5, 6
    table = torch.randn(stride**3, 2, generator=g, requires_grad=True)
    points = torch.cat([torch.rand(50, 3, generator=g), torch.tensor([[0.0, 0, 0], [1.0, 1, 1], [1.0, 0, 0.5]])])
    scaled = points * resolution
    base = scaled.floor().clamp(max=resolution - 1)
    frac = scaled - base
    expected = torch.zeros(len(points), 2)
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                i, j, k = (base + torch.tensor([a, b, c])).long().unbind(-1)
                weight = ((frac[:, 0] if a else 1 - frac[:, 0]) * (frac[:, 1] if b else 1 - frac[:, 1])
                          * (frac[:, 2] if c else 1 - frac[:, 2]))
                expected = expected + weight[:, None] * table[i + stride * j + stride**2 * k]
    got = interpolate_level(points, table, resolution, dense=True)
    assert torch.allclose(got, expected, atol=1e-5)
    (expected_grad,) = torch.autograd.grad(expected.sum(), table)
    (got_grad,) = torch.autograd.grad(got.sum(), table)
    assert torch.allclose(got_grad, expected_grad, atol=1e-5)
    with pytest.raises(ValueError, match=r"table: expected \(resolution \+ 1\)\^3 = 216 rows for a dense level, got 215"):
        interpolate_level(points, table[:-1], resolution, dense=True)


def test_dense_level_gives_every_corner_its_own_slot():
    from minidiff3d.fields import interpolate_level

    resolution = 3
    table = torch.arange((resolution + 1) ** 3, dtype=torch.float32)[:, None]  # feature = slot number
    corners = torch.stack(torch.meshgrid(*[torch.arange(resolution + 1.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    slots = interpolate_level(corners / resolution, table, resolution, dense=True)[:, 0]
    assert torch.allclose(slots.sort().values, table[:, 0])  # a permutation: no two corners share a slot
