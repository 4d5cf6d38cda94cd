# The course's commands. Only Python 3.11+ and make are needed; everything else lands in .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
# Empty: pip's own indexes (CI and the course machine hold the CPU build). A laptop may pass
# TORCH_INDEX=https://download.pytorch.org/whl/cpu to get the CPU wheel, not a multi-GB CUDA one.
TORCH_INDEX ?=
KERNEL ?= minidiff3d

.PHONY: lab test unit notebooks course exercises check-exercises outputs bench wheel-check clean

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), f"minidiff3d needs Python 3.11+, found {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# torch goes first, pinned exactly, so that the package's range is already satisfied
# and pip never pulls a CUDA build.
$(VENV)/.course: pyproject.toml | $(PY)
	$(PIP) install $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -e ".[course]"
	$(PY) -m ipykernel install --user --name $(KERNEL) --display-name "Python (minidiff3d)"
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.course
	$(PIP) install -e ".[course,dev]"
	touch $@

# Jupyter refuses to run as root (containers, some CI images) unless told.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(VENV)/.course
	$(VENV)/bin/jupyter lab notebooks/ $(ROOT_FLAG) $(LAB_ARGS)

# Unit tests, every chapter and solution notebook under nbval in quick mode,
# and a smoke run of the exercise notebooks.
test: $(VENV)/.dev
	MINIDIFF3D_QUICK=1 $(PY) -m pytest tests --nbval-lax --nbval-current-env notebooks solutions exercises/*.ipynb $(PYTEST_ARGS)

unit: $(VENV)/.dev
	$(PY) -m pytest tests $(PYTEST_ARGS)

# Every chapter, headless and in full mode, into build/ as HTML with a summary table.
course: $(VENV)/.dev
	$(PY) scripts/run_chapters.py --out build $(CHAPTERS)

# Store full-mode outputs in the committed notebooks.
outputs: $(VENV)/.dev
	$(PY) scripts/run_chapters.py --inplace $(CHAPTERS)

exercises: $(VENV)/.dev
	$(PY) scripts/build_exercises.py

check-exercises: $(VENV)/.dev
	$(PY) scripts/build_exercises.py --check

# Each benchmark prints a table against its baseline; record them in benchmarks/RESULTS.md.
bench: $(VENV)/.dev
	$(PY) benchmarks/toyworld_render.py
	$(PY) benchmarks/nerf.py --budget 300
	$(PY) benchmarks/point_metrics.py
	$(PY) benchmarks/sds.py
	$(PY) benchmarks/guidance_steps.py
	$(PY) benchmarks/sampling.py
	$(PY) benchmarks/sdf_unet.py
	$(PY) benchmarks/raster.py
	$(PY) benchmarks/parallel_runs.py

# Build the wheel, install it into a fresh venv under build/, and load every shipped prior from it.
wheel-check: | $(PY)
	PYTHON=$(PYTHON) PY=$(PY) TORCH="$(TORCH)" TORCH_INDEX="$(TORCH_INDEX)" bash scripts/check_wheel.sh

clean:
	rm -rf build .pytest_cache
