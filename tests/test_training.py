"""``fit``'s checkpoints: a run stopped and resumed reaches the weights of one that never stopped."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from minidiff3d.training import fit

DATA = (torch.randn(12, 3, generator=torch.Generator().manual_seed(0)),)


def noisy_loss(model, batch):
    """Dropout and input noise: both draw from the RNG, so resuming must restore its state."""
    x = batch[0]
    return (model(x + 0.1 * torch.randn_like(x)) - x.flip(1)).pow(2).mean()


def train(checkpoint_dir, loss_fn=noisy_loss, ema_decay=0.9):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 3))
    # 12 items in batches of 5: two batches an epoch, so a checkpoint at step 3 falls mid-epoch.
    return fit(model, DATA, loss_fn, steps=8, batch_size=5, lr=0.05, lr_schedule="cosine", weight_decay=0.01,
               ema_decay=ema_decay, log_every=2, checkpoint_dir=checkpoint_dir, checkpoint_every=3, show_progress=False)


class Killed(Exception):
    pass


def killed_at(step):
    """``noisy_loss``, until the run is killed during ``step``."""
    calls = iter(range(1, step + 1))

    def loss_fn(model, batch):
        if next(calls) == step:
            raise Killed
        return noisy_loss(model, batch)
    return loss_fn


@pytest.mark.parametrize("ema_decay", [0.9, None])
def test_a_resumed_run_reaches_the_weights_of_an_uninterrupted_one(tmp_path, ema_decay):
    whole = train(tmp_path / "whole", ema_decay=ema_decay)
    with pytest.raises(Killed):
        train(tmp_path / "split", killed_at(5), ema_decay)
    assert (tmp_path / "split" / "latest").read_text() == "step-000003"
    (tmp_path / "split" / "step-000006.tmp").mkdir()  # as a kill while saving leaves it
    resumed = train(tmp_path / "split", ema_decay=ema_decay)

    for key in ("step", "loss", "lr"):  # not seconds: wall time
        assert resumed.history[key] == whole.history[key], key
    for name, value in whole.model.state_dict().items():  # the EMA weights, when there is EMA
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    raw = [load_file(tmp_path / run / "step-000008" / "model.safetensors") for run in ("whole", "split")]
    assert raw[0].keys() == raw[1].keys()
    for name in raw[0]:
        torch.testing.assert_close(raw[1][name], raw[0][name], rtol=0, atol=0, msg=name)


def test_checkpoints_keep_the_last_step_folders_and_latest_names_the_newest(tmp_path):
    train(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000006", "step-000008"]
    assert (tmp_path / "latest").read_text() == "step-000008"
    with pytest.raises(ValueError, match="keep_checkpoints"):
        fit(nn.Linear(3, 3), DATA, noisy_loss, steps=1, checkpoint_dir=tmp_path, keep_checkpoints=0)


def test_a_run_that_ran_out_of_time_stays_ended_when_resumed(tmp_path):
    def run():
        torch.manual_seed(1)
        return fit(nn.Linear(3, 3), DATA, noisy_loss, steps=8, batch_size=5, max_seconds=1e-9, ema_decay=None,
                   checkpoint_dir=tmp_path, show_progress=False)

    first = run()
    assert first.history["step"] == [1]  # the time ran out in the first step
    again = run()
    assert again.history["step"] == [1] and (tmp_path / "latest").read_text() == "step-000001"
    for name, value in first.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[name], value, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs,message", [
    (dict(log_every=0), "log_every: expected a positive integer, got 0"),
    (dict(checkpoint_every=0), "checkpoint_every: expected a positive integer, got 0"),
    (dict(ema_decay=1.0), r"ema_decay: expected a decay in \[0, 1\) or None, got 1.0"),
    (dict(ema_decay=-0.1), r"ema_decay: expected a decay in \[0, 1\) or None, got -0.1"),
    (dict(ema_decay=float("nan")), r"ema_decay: expected a decay in \[0, 1\) or None, got nan"),
    (dict(max_seconds=0), "max_seconds: expected a finite positive number"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(nn.Linear(3, 3), DATA, noisy_loss, steps=1, show_progress=False, **kwargs)


def test_a_run_is_a_function_of_its_seed_and_leaves_the_global_rng_alone():
    def run(seed):
        torch.manual_seed(1)  # the same initial weights every time
        model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 3))
        state = torch.random.get_rng_state()
        result = fit(model, DATA, noisy_loss, steps=4, batch_size=5, log_every=1, seed=seed, show_progress=False)
        assert torch.equal(torch.random.get_rng_state(), state)
        return result.history["loss"]

    assert run(0) == run(0) and run(1) != run(0)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_lr_multipliers_scale_adams_first_step_for_the_named_parameters(schedule):
    """Adam's first step moves every weight by lr · g/(|g| + eps), about lr whatever the gradient's size: a
    parameter given a factor of 10 moves 10 times as far, on the same schedule as the rest."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lr, steps = 1e-3, 4  # the cosine's first step is at its full rate
    fit(model, DATA, lambda m, batch: (m(batch[0]) - batch[0].flip(1)).pow(2).mean(), steps=1, batch_size=12, lr=lr,
        lr_schedule=schedule, ema_decay=None, show_progress=False, lr_multipliers={"2.": 10.0})
    for name, p in model.named_parameters():
        moved = (p.detach() - before[name]).abs()
        expected = lr * (10.0 if name.startswith("2.") else 1.0)
        torch.testing.assert_close(moved, torch.full_like(moved, expected), rtol=1e-3, atol=0)


@pytest.mark.parametrize("multipliers,message", [
    ({"3.": 10.0}, r"lr_multipliers: expected each prefix to name a parameter of the model, got '3\.'"),
    ({"0.": 0.0}, r"lr_multipliers\['0\.'\]: expected a finite positive number"),
    ({"0.": 2.0, "0.weight": 3.0}, "lr_multipliers: expected prefixes that name disjoint parameters"),
])
def test_bad_lr_multipliers_are_named(multipliers, message):
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3))
    with pytest.raises(ValueError, match=message):
        fit(model, DATA, noisy_loss, steps=1, show_progress=False, lr_multipliers=multipliers)
