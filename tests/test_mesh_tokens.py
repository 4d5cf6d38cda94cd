"""Meshes as tokens: canonical encoding, decoding with validity, and a tiny transformer."""

import numpy as np
import pytest
import torch
import trimesh

from minidiff3d.mesh_tokens import (BOS, EOS, LOW_POLY_CATEGORIES, SPECIAL, decode, encode, low_poly_mesh, mesh_transformer,
                                    sample_meshes, train_mesh_transformer)


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
