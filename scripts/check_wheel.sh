#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv, and load every shipped file from there: proves
# that an install from the wheel, not the source tree, has all the assets the package reads.
# Usage: scripts/check_wheel.sh (or `make wheel-check`). Env: PYTHON (makes the venv, default
# python3), PY (builds the wheel, default .venv/bin/python), TORCH, TORCH_INDEX as in the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PY=${PY:-.venv/bin/python}
TORCH=${TORCH:-torch==2.13.0}
VENV=build/wheel-venv

# setuptools reuses build/lib, so files since deleted from the tree would slip into the wheel.
rm -rf build/lib build/bdist.* build/wheel
"$PY" -m pip wheel . --no-deps -w build/wheel
wheel=$(ls build/wheel/minidiff3d-*.whl)

"$PY" - "$wheel" <<'EOF'
import subprocess, sys, zipfile
shipped = set(subprocess.run(["git", "ls-files", "minidiff3d/assets"], capture_output=True, text=True, check=True).stdout.split())
missing = sorted(shipped - set(zipfile.ZipFile(sys.argv[1]).namelist()))
if missing:
    sys.exit(f"{sys.argv[1]}: expected every file of `git ls-files minidiff3d/assets`, missing {missing}")
print(f"{sys.argv[1]}: holds all {len(shipped)} files of minidiff3d/assets")
EOF

"$PYTHON" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install "$TORCH" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
"$VENV/bin/python" -m pip install "$wheel"

# From outside the repository, so that `import minidiff3d` can only find the installed copy.
python=$PWD/$VENV/bin/python
cd "$(mktemp -d)"
HF_HUB_OFFLINE=1 "$python" - <<'EOF'
import sys
from pathlib import Path

import minidiff3d
from minidiff3d import assets, diffusion, priors

where = Path(minidiff3d.__file__).resolve()
if Path(sys.prefix).resolve() not in where.parents:
    sys.exit(f"minidiff3d: expected the copy installed in {sys.prefix}, got {where}")
size = lambda module: f"{sum(p.numel() for p in module.parameters()):,} parameters"
pipe = priors.load("toy-sd", device="cpu")
print(f"toy-sd: {type(pipe).__name__}, U-Net {size(pipe.unet)}, VAE {size(pipe.vae)}, text encoder {size(pipe.text_encoder)}")
print(f"toy-clip: {type(priors.load('toy-clip', device='cpu').model).__name__}")
zero123 = priors.load("toy-zero123", device="cpu")
print(f"toy-zero123: {type(zero123).__name__}, U-Net {size(zero123.unet)} ({zero123.unet.config.in_channels} input channels)")
mvdream = priors.load("toy-mvdream", device="cpu")
print(f"toy-mvdream: {type(mvdream).__name__}, U-Net {size(mvdream.unet)} (camera embedding {mvdream.unet.config.class_embed_type})")
for load in (diffusion.load_point_cloud_prior, diffusion.load_sdf_prior):
    model, scheduler = load(device="cpu")
    print(f"{load.__name__}: {type(model).__name__}, {size(model)}, {type(scheduler).__name__}")
print(f"toyworld reference: {len(assets.load_toyworld_reference()['images'])} views")
print(f"all loaded from {where.parent}, each weight file checked against manifest.json's sha256")
EOF
