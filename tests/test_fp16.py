"""The fp16 path runs for real on CPU: fp16 autocast, a gradient scaler for each network, an overflowing step skipped
by both, and a resume that restores both scalers and ends where an uninterrupted run does."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from conftest import make_tiny_config
from trainer_helpers import tiny_trainer
from transformers import TrainerCallback

FP16 = dict(precision="fp16", max_steps=5, save_strategy="steps", save_steps=3, logging_steps=1)
OVERFLOW_STEP = 2  # the second optimizer step (1-based) gets non-finite gradients in both networks
INITIAL_SCALE = 1.0
GRAD_SCALER = torch.amp.GradScaler  # the class (a fixture below patches the name)


class _Overflow(TrainerCallback):
    """Makes one step's gradients infinite in the generator and the discriminator, and records what that step did:
    the weights, both learning-rate schedules and both loss scales, before and after."""

    def __init__(self, trainer, step: int):
        self.trainer, self.step, self.active, self.record = trainer, step, False, {}
        for network in (trainer.model, trainer.discriminator):
            first = next(parameter for parameter in network.parameters() if parameter.requires_grad)
            first.register_hook(lambda grad: grad * math.inf if self.active else grad)

    def _snapshot(self) -> dict:
        trainer = self.trainer
        update = trainer.discriminator_update
        return {
            "weights": {
                **{f"g.{k}": v.detach().clone() for k, v in trainer.model.state_dict().items()},
                **{f"d.{k}": v.detach().clone() for k, v in trainer.discriminator.state_dict().items()},
            },
            "schedules": (trainer.lr_scheduler.last_epoch, update.lr_scheduler.last_epoch),
            "scales": (trainer.accelerator.scaler.get_scale(), update.scaler.get_scale()),
        }

    def on_step_begin(self, args, state, control, **kwargs):
        self.active = state.global_step + 1 == self.step
        if self.active:
            self.record["before"] = self._snapshot()

    def on_step_end(self, args, state, control, **kwargs):
        if self.active:
            self.record["after"] = self._snapshot()
            self.active = False


def _weights(trainer) -> dict[str, torch.Tensor]:
    return {
        **{f"g.{k}": v.detach().clone() for k, v in trainer.model.state_dict().items()},
        **{f"d.{k}": v.detach().clone() for k, v in trainer.discriminator.state_dict().items()},
    }


@pytest.fixture(scope="module")
def small_initial_scale():
    """A loss scale of 1 to start with: the default 2**16 overflows the tiny model's first steps, which the scalers
    would skip until the scale is low enough; here every step but the forced one is taken."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.amp, "GradScaler", functools.partial(GRAD_SCALER, init_scale=INITIAL_SCALE))
        yield


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, small_initial_scale):
    """Five fp16 steps with an overflow at the second and a checkpoint at the third."""
    output_dir = tmp_path_factory.mktemp("fp16")
    trainer = tiny_trainer(make_tiny_config(), str(output_dir), **FP16)
    start = _weights(trainer)
    overflow = _Overflow(trainer, OVERFLOW_STEP)
    trainer.add_callback(overflow)
    dtypes = set()
    decoder = trainer.model.vits.decoder
    decoder.register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype) if module.training else None)
    trainer.train()
    return trainer, overflow.record, dtypes, output_dir, start


def test_fp16_on_cpu_computes_in_fp16_with_a_scaler_for_each_network(straight_run):
    trainer, _, dtypes, _, start = straight_run
    assert trainer.args.fp16 and not trainer.args.bf16
    assert dtypes == {torch.float16}, "the decoder ran under fp16 autocast"
    generator_scaler = trainer.accelerator.scaler
    discriminator_scaler = trainer.discriminator_update.scaler
    assert isinstance(generator_scaler, GRAD_SCALER) and isinstance(discriminator_scaler, GRAD_SCALER)
    assert generator_scaler is not discriminator_scaler
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == FP16["max_steps"] and all(math.isfinite(loss) for loss in losses)
    # the forced overflow is the only step skipped: each scale was halved once, and both networks trained
    assert generator_scaler.get_scale() == discriminator_scaler.get_scale() == INITIAL_SCALE / 2
    end = _weights(trainer)
    changed = {name[:2] for name in start if not torch.equal(start[name], end[name])}
    assert changed == {"g.", "d."}


def test_an_overflowing_step_is_skipped_by_both_scalers(straight_run):
    _, record, _, _, _ = straight_run
    before, after = record["before"], record["after"]
    for name, value in before["weights"].items():
        assert torch.equal(value, after["weights"][name]), f"{name} changed in the skipped step"
    assert after["schedules"] == before["schedules"], "neither learning-rate schedule advances on a skipped step"
    # each scaler halves its scale (backoff 0.5) after the overflow it found
    assert after["scales"] == (before["scales"][0] / 2, before["scales"][1] / 2)


def test_an_fp16_resume_restores_both_scalers_and_ends_where_the_straight_run_did(
    straight_run, small_initial_scale, tmp_path
):
    straight, _, _, output_dir, _ = straight_run
    checkpoint = output_dir / "checkpoint-3"
    assert (checkpoint / "scaler.pt").is_file()
    assert (checkpoint / "training_state" / "discriminator_scaler.pt").is_file()

    # other starting weights: the checkpoint must restore everything, the scales included
    resumed = tiny_trainer(make_tiny_config(), str(tmp_path), init_seed=123, **FP16)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == FP16["max_steps"]
    assert resumed.accelerator.scaler.get_scale() == straight.accelerator.scaler.get_scale()
    assert resumed.discriminator_update.scaler.get_scale() == straight.discriminator_update.scaler.get_scale()
    expected, actual = _weights(straight), _weights(resumed)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_trains_on_a_cpu_under_bf16_autocast(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("the CPU case")
    trainer = tiny_trainer(make_tiny_config(), str(tmp_path), precision="bf16", max_steps=2)
    assert trainer.args.bf16 and trainer.args.use_cpu
    dtypes = set()
    trainer.model.vits.decoder.register_forward_hook(
        lambda module, inputs, output: dtypes.add(output.dtype) if module.training else None
    )
    trainer.train()
    assert dtypes == {torch.bfloat16}
    assert all(math.isfinite(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry)
