"""Meshes as tokens: canonical encoding, decoding with validity, and a tiny transformer."""

import numpy as np
import pytest
import torch
import trimesh
from hypothesis import given, settings, strategies as st

from minidiff3d.mesh_tokens import (BOS, EOS, LOW_POLY_CATEGORIES, SPECIAL, decode, encode, low_poly_mesh, mesh_transformer,
                                    quantise, sample_meshes, train_mesh_transformer)


@pytest.mark.parametrize("category", LOW_POLY_CATEGORIES)
def test_low_poly_meshes_round_trip_through_tokens(category):
    mesh = low_poly_mesh(category, seed=3)
    assert mesh.is_watertight and mesh.volume > 0 and np.abs(mesh.vertices).max() <= 0.9
    tokens = encode(mesh, bins=64)
    assert tokens[0] == BOS and tokens[-1] == EOS and (len(tokens) - 2) == 9 * len(mesh.faces)
    decoded = decode(tokens, bins=64)
    assert decoded.valid, decoded.problem
    assert abs(decoded.mesh.volume - mesh.volume) / mesh.volume < 0.1  # within quantisation
    assert decoded.mesh.volume > 0  # the winding, and so the outward normals, survive


def test_encoding_is_canonical_under_face_order_and_corner_rotation():
    mesh = low_poly_mesh("box", seed=1)
    faces = np.asarray(mesh.faces)
    shuffled = trimesh.Trimesh(mesh.vertices, np.roll(faces[np.random.default_rng(0).permutation(len(faces))], 1, axis=1), process=False)
    assert torch.equal(encode(mesh), encode(shuffled))


def test_hand_built_sequence_decodes_and_defects_are_named():
    tetra = trimesh.Trimesh([[0.5, 0.5, 0.5], [0.5, -0.5, -0.5], [-0.5, 0.5, -0.5], [-0.5, -0.5, 0.5]],
                            [[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]], process=False)
    body = encode(tetra, bins=5)[1:-1] - SPECIAL  # 5 levels for -1, -0.5, 0, 0.5, 1: ±0.5 are levels 1 and 3
    assert set(body.tolist()) == {1, 3} and len(body) == 36
    assert decode(encode(tetra, 16), 16).valid
    assert "not a whole number of faces" in decode(encode(tetra, 16)[:-3], 16).problem
    assert "at least 4" in decode(encode(tetra, 16)[:28], 16).problem
    open_surface = trimesh.Trimesh(tetra.vertices, tetra.faces[:3].tolist() + [[1, 2, 0]], process=False)
    assert decode(encode(open_surface, 16), 16).problem == "the surface is not closed"
    degenerate = torch.tensor([BOS] + [SPECIAL + 1] * 36 + [EOS])
    assert "degenerate" in decode(degenerate, 16).problem


def test_a_tiny_transformer_memorises_a_mesh_and_decodes_it_greedily():
    box = low_poly_mesh("box", seed=0)
    model = mesh_transformer(bins=16, max_faces=12, width=32, layers=1, heads=2)
    losses = train_mesh_transformer(model, [encode(box, bins=16)], steps=60, batch_size=4, lr=1e-2)
    assert losses[-1] < 0.1 * losses[0]
    sample = sample_meshes(model, 1, bins=16, temperature=0)[0]
    assert sample.valid, sample.problem
    assert np.allclose(np.sort(sample.mesh.vertices, axis=0), np.sort(decode(encode(box, 16), 16).mesh.vertices, axis=0))


def test_too_few_bins_are_named():
    tetra = low_poly_mesh("pyramid", seed=0)
    with pytest.raises(ValueError, match="bins: expected at least 2 quantisation levels, got 1"):
        encode(tetra, bins=1)  # one level collapses every face: it used to return [BOS, EOS]
    with pytest.raises(ValueError, match="bins: expected at least 2"):
        decode(torch.tensor([BOS, EOS]), bins=1)


def test_sampling_is_seeded_without_touching_the_global_rng():
    torch.manual_seed(0)
    model = mesh_transformer(bins=8, max_faces=2, width=16, layers=1, heads=2)
    # An untrained model's samples are random lengths of random tokens: what decode says of them tells them apart.
    problems = lambda seed: [s.problem for s in sample_meshes(model, 4, 8, seed=seed)]
    state = torch.random.get_rng_state()
    first = problems(0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert problems(0) == first and problems(1) != first


def _canonical_faces(vertices, faces, bins):
    """The mesh's faces as corner levels, each rotated to its least rotation (winding kept), non-degenerate, sorted."""
    corners = quantise(vertices, bins)[np.asarray(faces)]
    return sorted(min(tuple(map(tuple, np.roll(face, -k, 0))) for k in range(3))
                  for face in corners if len({tuple(c) for c in face}) == 3)


@st.composite
def random_meshes(draw):
    n = draw(st.integers(3, 8))
    vertices = draw(st.lists(st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 3), min_size=n, max_size=n))
    faces = draw(st.lists(st.tuples(*[st.integers(0, n - 1)] * 3), min_size=1, max_size=10))
    return trimesh.Trimesh(np.array(vertices), np.array(faces), process=False)


@settings(max_examples=40, deadline=None)
@given(mesh=random_meshes(), bins=st.integers(2, 16))
def test_decode_of_encode_has_the_quantised_faces_of_the_mesh(mesh, bins):
    expected = _canonical_faces(mesh.vertices, mesh.faces, bins)
    decoded = decode(encode(mesh, bins), bins)
    if len(expected) < 4:
        assert decoded.mesh is None and "at least 4" in decoded.problem
    else:
        assert decoded.mesh is not None, decoded.problem
        assert _canonical_faces(decoded.mesh.vertices, decoded.mesh.faces, bins) == expected
