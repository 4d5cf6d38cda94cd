"""Meshes as token sequences, the third of chapter 03's routes to meshes (PolyGen, MeshGPT).

A low-poly mesh becomes a sentence: coordinates are quantised to ``bins`` levels over [-1,1],
faces are written as their three corners (nine coordinate tokens per face, the triangle-soup
form of MeshGPT), and the sequence is ordered canonically so that one mesh has one sentence:
inside a face the corners are rotated to start at the lowest (z, y, x), keeping the winding,
and faces are sorted by their corners. An autoregressive transformer (transformers' GPT-2 here)
then learns ``p(token | previous tokens)``, and a sample is decoded by merging corners that
share a quantised position.

Not every sampled sentence is a mesh: its length may not be a multiple of nine, a face may be
degenerate, or the surface may not close. ``decode`` reports which, and the validity rate of a
model's samples is the number this route is judged by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from .runtime import seeded
from .validation import check_choice, check_positive_int

PAD, BOS, EOS = 0, 1, 2
SPECIAL = 3  # coordinate level q is token SPECIAL + q
TOKENS_PER_FACE = 9


def _check_bins(bins) -> int:
    """Quantisation levels: at least 2, or every corner falls on one level and every face collapses."""
    bins = check_positive_int("bins", bins)
    if bins < 2:
        raise ValueError(f"bins: expected at least 2 quantisation levels, got {bins}")
    return bins


def vocab_size(bins: int) -> int:
    return SPECIAL + bins


def quantise(vertices: np.ndarray, bins: int) -> np.ndarray:
    """Integer levels ``[V,3]`` in ``[0, bins)`` of coordinates in [-1,1] (clipped)."""
    return np.clip(np.round((np.asarray(vertices) + 1) / 2 * (bins - 1)), 0, bins - 1).astype(np.int64)


def dequantise(levels: np.ndarray, bins: int) -> np.ndarray:
    return np.asarray(levels, dtype=np.float64) / (bins - 1) * 2 - 1


def encode(mesh: trimesh.Trimesh, bins: int = 32) -> torch.Tensor:
    """The canonical token sequence ``[BOS, 9 tokens per face ..., EOS]`` of ``mesh`` (vertices in [-1,1])."""
    bins = _check_bins(bins)
    corners = quantise(mesh.vertices, bins)[np.asarray(mesh.faces)]  # [F,3,3], (x, y, z) per corner
    keys = corners[..., ::-1]  # compare corners by (z, y, x), as PolyGen orders vertices
    faces = []
    for face, key in zip(corners, keys):
        first = min(range(3), key=lambda i: tuple(key[i]))
        face = np.roll(face, -first, axis=0)  # a rotation keeps the winding, so the normal is unchanged
        if len({tuple(c) for c in face}) == 3:  # quantisation can collapse a small face; drop it
            faces.append(face)
    faces.sort(key=lambda f: tuple(f[..., ::-1].ravel()))
    body = (np.array(faces).reshape(-1) + SPECIAL).tolist() if faces else []
    return torch.tensor([BOS, *body, EOS])


@dataclass
class Decoded:
    mesh: trimesh.Trimesh | None
    problem: str | None  # None for a valid mesh

    @property
    def valid(self) -> bool:
        return self.problem is None


def decode(tokens, bins: int = 32) -> Decoded:
    """Tokens (with or without BOS/EOS/PAD) back to a mesh, and whether it is valid.

    Valid means: the coordinate tokens come in whole faces, there are at least four, none is
    degenerate, and the corners merged by position form a closed (watertight) surface.
    """
    bins = _check_bins(bins)
    tokens = [int(t) for t in torch.as_tensor(tokens).reshape(-1).tolist()]
    if EOS in tokens:
        tokens = tokens[: tokens.index(EOS)]
    body = [t for t in tokens if t not in (PAD, BOS)]
    if any(t < SPECIAL or t >= SPECIAL + bins for t in body):
        return Decoded(None, "a special token inside the sequence")
    if len(body) % TOKENS_PER_FACE:
        return Decoded(None, f"{len(body)} coordinate tokens: not a whole number of faces")
    corners = np.array(body, dtype=np.int64).reshape(-1, 3, 3) - SPECIAL
    if len(corners) < 4:
        return Decoded(None, f"{len(corners)} faces: a closed surface needs at least 4")
    levels, faces = np.unique(corners.reshape(-1, 3), axis=0, return_inverse=True)
    faces = faces.reshape(-1, 3)
    if (np.sort(faces, axis=1)[:, 1:] == np.sort(faces, axis=1)[:, :-1]).any():
        return Decoded(None, "a degenerate face (two corners at one position)")
    mesh = trimesh.Trimesh(dequantise(levels, bins), faces, process=False)
    if not mesh.is_watertight:
        return Decoded(mesh, "the surface is not closed")
    return Decoded(mesh, None)


# ---------------------------------------------------------------- low-poly toy meshes


def _prism(n: int, radius: float, height: float, top_scale: float = 1.0) -> trimesh.Trimesh:
    """An n-gon prism (top_scale 1), frustum, or pyramid (top_scale 0) standing on z = -height/2."""
    angles = np.arange(n) * 2 * np.pi / n
    ring = np.stack([np.cos(angles), np.sin(angles)], -1) * radius
    bottom = np.column_stack([ring, np.full(n, -height / 2)])
    if top_scale == 0:
        vertices = np.vstack([bottom, [[0, 0, height / 2]]])
        apex = n
        faces = [[i, (i + 1) % n, apex] for i in range(n)] + [[0, i + 1, i] for i in range(1, n - 1)]
        return trimesh.Trimesh(vertices, faces, process=False)
    top = np.column_stack([ring * top_scale, np.full(n, height / 2)])
    vertices = np.vstack([bottom, top])
    sides = [[i, (i + 1) % n, n + (i + 1) % n] for i in range(n)] + [[i, n + (i + 1) % n, n + i] for i in range(n)]
    caps = [[0, i + 1, i] for i in range(1, n - 1)] + [[n, n + i, n + i + 1] for i in range(1, n - 1)]
    return trimesh.Trimesh(vertices, sides + caps, process=False)


LOW_POLY_CATEGORIES = ("box", "pyramid", "prism", "octahedron")


def low_poly_mesh(category: str, seed: int = 0) -> trimesh.Trimesh:
    """A small closed mesh of ``category`` with random proportions, inside [-0.9, 0.9]^3."""
    check_choice("category", category, LOW_POLY_CATEGORIES)
    rng = np.random.default_rng(seed)
    size = lambda: rng.uniform(0.4, 0.9)
    if category == "box":
        mesh = trimesh.creation.box(extents=[2 * size(), 2 * size(), 2 * size()])
    elif category == "pyramid":
        mesh = _prism(int(rng.integers(3, 6)), size(), 2 * size(), top_scale=0.0)
    elif category == "prism":
        mesh = _prism(int(rng.integers(3, 7)), size(), 2 * size())
    else:
        a, b, c = size(), size(), size()
        vertices = np.array([[a, 0, 0], [-a, 0, 0], [0, b, 0], [0, -b, 0], [0, 0, c], [0, 0, -c]])
        faces = [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
        mesh = trimesh.Trimesh(vertices, faces, process=False)
    return mesh


# ---------------------------------------------------------------- the autoregressive model


def mesh_transformer(bins: int = 32, max_faces: int = 32, width: int = 128, layers: int = 3, heads: int = 4):
    """A small GPT-2 (transformers) over the mesh vocabulary, long enough for ``max_faces`` faces."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab_size(bins), n_positions=2 + TOKENS_PER_FACE * max_faces, n_embd=width,
                        n_layer=layers, n_head=heads, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    return GPT2LMHeadModel(config)


def pad_sequences(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens [B,L], attention_mask [B,L])`` with PAD after each sequence."""
    length = max(len(s) for s in sequences)
    tokens = torch.full((len(sequences), length), PAD)
    for i, s in enumerate(sequences):
        tokens[i, : len(s)] = s
    return tokens, (tokens != PAD).long()


def train_mesh_transformer(model, sequences: list[torch.Tensor], steps: int = 500, batch_size: int = 16, lr: float = 1e-3,
                           seed: int = 0) -> list[float]:
    """Next-token cross-entropy on ``sequences`` (PAD positions ignored); returns the loss per step."""
    steps = check_positive_int("steps", steps)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        pick = torch.randint(len(sequences), (batch_size,), generator=generator).tolist()
        tokens, mask = pad_sequences([sequences[i] for i in pick])
        labels = tokens.masked_fill(mask == 0, -100)  # -100: ignored by the loss
        loss = model(input_ids=tokens, attention_mask=mask, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def sample_meshes(model, n: int, bins: int = 32, temperature: float = 1.0, seed: int = 0) -> list[Decoded]:
    """Draw ``n`` sequences from ``BOS`` with transformers' ``generate`` and decode each one.

    ``temperature=0`` decodes greedily. One wrong token in a hundred breaks a mesh, so validity
    rises steeply as the temperature falls, at the price of diversity.
    """
    start = torch.full((n, 1), BOS)
    sampling = dict(do_sample=True, temperature=temperature, top_k=0) if temperature > 0 else dict(do_sample=False)
    with seeded(seed):  # generate draws from the global RNG and takes no generator
        out = model.generate(start, attention_mask=torch.ones_like(start), max_length=model.config.n_positions,
                             pad_token_id=PAD, eos_token_id=EOS, **sampling)
    return [decode(sequence, bins) for sequence in out]
