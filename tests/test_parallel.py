"""fit_parallel: runs fitted in worker processes come back as the same runs fitted here, in order."""

import pytest
import torch

from minidiff3d.priors import tiny_stable_diffusion
from minidiff3d.systems import fit_parallel, run_config


def small(prompt: str, seed: int = 0):
    return run_config("dreamfusion", prompt, {"system.render_size": 16, "renderer.n_samples": 16, "system.steps": 3,
                                              "system.seed": seed})


@pytest.fixture(scope="module")
def tiny_pipe():
    pipe = tiny_stable_diffusion()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_workers_reach_the_weights_of_a_single_threaded_fit_here(tiny_pipe):
    configs = [small("a red duck"), small("a blue cube", seed=1), small("a green cone", seed=2)]
    runs = fit_parallel(configs, tiny_pipe, workers=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting: then the sums run in the same order and agree to the bit
    try:
        here = fit_parallel(configs, tiny_pipe, workers=1)
    finally:
        torch.set_num_threads(threads)
    for run, reference, config in zip(runs, here, configs):
        assert run.run_config is config and run.step_count == reference.step_count == 3
        assert len(run.history["seconds"]) == 3 and run.history["seconds"][-1] > 0
        fitted, expected = run.geometry.state_dict(), reference.geometry.state_dict()
        assert all(torch.equal(fitted[key], expected[key]) for key in expected)
    # the runs differ from one another (each its own prompt and seed), so the order was kept
    first, second = (r.geometry.state_dict() for r in runs[:2])
    assert any(not torch.equal(first[k], second[k]) for k in first)
    assert runs[0].render(15.0, 30.0, size=8)["rgb"].shape == (1, 3, 8, 8)


def test_bad_arguments_are_named(tiny_pipe):
    with pytest.raises(TypeError, match=r"configs\[1\]: expected a RunConfig"):
        fit_parallel([small("a red duck"), {"method": "dreamfusion"}], tiny_pipe)
    with pytest.raises(ValueError, match="workers"):
        fit_parallel([small("a red duck")], tiny_pipe, workers=0)
