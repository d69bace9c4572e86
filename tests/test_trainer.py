"""VitsTrainer: logged loss components, discriminator isolation, checkpoints, exact resume, best model, time budget."""

from __future__ import annotations

import functools
import math
import os
import re

import numpy as np
import pytest
import torch
from conftest import DEMO_DIR, make_tiny_config
from safetensors.torch import load_file
from trainer_helpers import StopAtStep, tiny_trainer
from transformers import TrainerCallback, VitsModel, VitsTokenizer, get_scheduler, pipeline

from recipe.model.losses import discriminate, discriminator_objective, frozen, generator_objective
from recipe.training.checkpoint_layout import TRAINING_MODEL_WEIGHTS, TRAINING_STATE_DIR
from recipe.training.time_budget import steps_that_fit

GENERATOR_COMPONENTS = {"mel", "kl", "duration", "generator", "feature_matching", "amplitude", "l2sp"}
DISCRIMINATOR_COMPONENTS = {"discriminator", "discriminator_real", "discriminator_fake"}


def _weights(trainer) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v.detach().clone() for k, v in trainer.model.state_dict().items()}
    if trainer.discriminator is not None:
        state.update({f"discriminator.{k}": v.detach().clone() for k, v in trainer.discriminator.state_dict().items()})
    return state


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """4 steps with every loss term on, eval and a checkpoint every 2 steps, best model reloaded at the end."""
    output_dir = str(tmp_path_factory.mktemp("trained"))
    tokenizer = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"))
    trainer = tiny_trainer(
        make_tiny_config(),
        output_dir,
        tokenizer=tokenizer,
        amplitude_loss_weight=1.0,
        l2sp_weight=1.0,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
    )
    before = _weights(trainer)
    trainer.train()
    return trainer, before, output_dir


def test_loss_components_are_logged_under_stable_names(trained):
    trainer, _, _ = trained
    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    eval_logs = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert len(train_logs) == 2 and len(eval_logs) >= 2
    for entry in train_logs:
        assert GENERATOR_COMPONENTS | DISCRIMINATOR_COMPONENTS <= set(entry)
        assert all(math.isfinite(entry[name]) for name in GENERATOR_COMPONENTS | DISCRIMINATOR_COMPONENTS)
    for entry in eval_logs:
        assert {f"eval_{name}" for name in GENERATOR_COMPONENTS | DISCRIMINATOR_COMPONENTS} <= set(entry)
    # averaged over the window, not the last step's value: the mel term is a mean of positive L1 values
    assert train_logs[0]["mel"] > 0 and train_logs[0]["l2sp"] >= 0


def _nan_at_step(monkeypatch, step: int) -> None:
    """Make the generator's loss NaN at training step `step` (1-based; no evaluation runs in these tests)."""
    import recipe.training.trainer

    real_objective = recipe.training.trainer.generator_objective
    calls = []

    def objective(*args, **kwargs):
        loss, components = real_objective(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan"), components) if len(calls) == step else (loss, components)

    monkeypatch.setattr(recipe.training.trainer, "generator_objective", objective)


def test_a_nan_loss_is_logged_and_warned_about_not_averaged_away(tmp_path, monkeypatch, caplog):
    import logging

    _nan_at_step(monkeypatch, 4)
    trainer = tiny_trainer(make_tiny_config(), str(tmp_path), discriminator=False, max_steps=4, logging_steps=2)
    with caplog.at_level(logging.WARNING, logger="recipe.training.non_finite"):
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and math.isfinite(losses[0]) and math.isnan(losses[1])
    assert "Non-finite training values in the logging window that ends at step 4" in caplog.text
    assert "ends at step 2" not in caplog.text  # the first window was finite
    # the clips of the batch whose loss was NaN are named (the synthetic rows' paths)
    assert re.search(r"came from the batch of step 4: wavs/clip-\d\.wav, wavs/clip-\d\.wav\)", caplog.text)


def test_weights_broken_by_a_nan_step_are_named_when_the_next_step_fails(tmp_path, monkeypatch):
    _nan_at_step(monkeypatch, 2)
    trainer = tiny_trainer(make_tiny_config(), str(tmp_path), discriminator=False, max_steps=4, logging_steps=1)
    with pytest.raises(FloatingPointError, match=r"weights are no longer finite at step 2 .*earlier step's loss"):
        trainer.train()


def test_a_nan_loss_in_the_first_step_names_the_batch_and_the_real_checkpoint_state(tmp_path, monkeypatch):
    # no log before the failure (logging every 10 steps): the clips are found from the steps tracked on the device
    _nan_at_step(monkeypatch, 1)
    trainer = tiny_trainer(make_tiny_config(), str(tmp_path), discriminator=False, max_steps=4, logging_steps=10)
    with pytest.raises(FloatingPointError) as error:
        trainer.train()
    message = str(error.value)
    assert re.search(r"came from the batch of step 1: wavs/clip-\d\.wav, wavs/clip-\d\.wav\)", message), message
    # no checkpoint exists yet: none is pointed to
    assert f"No checkpoint was saved in {tmp_path} yet" in message


def test_both_networks_train(trained):
    trainer, before, _ = trained
    after = _weights(trainer)
    changed = {name.split(".")[0] for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"model", "discriminator"}


def test_checkpoints_are_loadable_models_with_training_state(trained):
    trainer, _, output_dir = trained
    checkpoint = os.path.join(output_dir, "checkpoint-2")
    files = set(os.listdir(checkpoint))
    assert {"config.json", "model.safetensors", "vocab.json", "discriminator.safetensors", "optimizer.pt"} <= files
    assert {"scheduler.pt", "rng_state.pth", "trainer_state.json"} <= files
    state_files = set(os.listdir(os.path.join(checkpoint, TRAINING_STATE_DIR)))
    assert {"discriminator_optimizer.pt", "discriminator_scheduler.pt", TRAINING_MODEL_WEIGHTS} <= state_files

    model = VitsModel.from_pretrained(checkpoint).eval()
    # the inference copy has no training-time weight norm on the decoder, and equals the trained decoder
    assert not hasattr(model.decoder.upsampler[0], "parametrizations")
    trained_weights = load_file(os.path.join(checkpoint, TRAINING_STATE_DIR, TRAINING_MODEL_WEIGHTS))
    g = trained_weights["vits.decoder.upsampler.0.parametrizations.weight.original0"]
    v = trained_weights["vits.decoder.upsampler.0.parametrizations.weight.original1"]
    torch.testing.assert_close(model.decoder.upsampler[0].weight, torch._weight_norm(v, g, 0))

    speech = pipeline("text-to-speech", model=checkpoint)("roj bas")
    assert speech["sampling_rate"] == 16000 and np.abs(speech["audio"]).max() > 0


def test_best_model_is_reloaded_at_the_end(trained):
    trainer, _, output_dir = trained
    evals = {
        entry["step"]: entry["eval_mel"]
        for entry in trainer.state.log_history
        if "eval_mel" in entry and "eval_loss" in entry
    }
    best_step = min((step for step in evals if step in (2, 4)), key=lambda step: evals[step])
    assert trainer.state.best_model_checkpoint == os.path.join(output_dir, f"checkpoint-{best_step}")
    saved = load_file(os.path.join(trainer.state.best_model_checkpoint, TRAINING_STATE_DIR, TRAINING_MODEL_WEIGHTS))
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)


def test_fp16_resume_without_the_discriminator_scaler_file_is_refused(trained, tmp_path):
    # an fp16 run (fp16 runs on CPU too: recipe.training.fp16) resuming from a checkpoint saved without fp16, which
    # has no discriminator_scaler.pt
    _, _, output_dir = trained
    checkpoint = os.path.join(output_dir, "checkpoint-2")
    trainer = tiny_trainer(make_tiny_config(), str(tmp_path), precision="fp16")
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    assert trainer.discriminator_update.scaler is not None
    with pytest.raises(FileNotFoundError, match="discriminator_scaler.pt is missing"):
        trainer._load_optimizer_and_scheduler(checkpoint)


def _two_pass_gradients(trainer, outputs) -> dict[str, torch.Tensor]:
    """The gradients of VITS's two passes on `outputs`, as the trainer scales them (accumulation, fp16 loss scale):
    the generator's objective with the discriminator frozen, the discriminator's on detached audio, each scored anew."""
    scale = 1.0 / trainer.current_gradient_accumulation_steps
    generator = [p for p in trainer.model.parameters() if p.requires_grad]
    discriminator = list(trainer.discriminator.parameters())
    with frozen(trainer.discriminator), trainer.accelerator.autocast():
        generator_loss, _ = generator_objective(
            outputs, trainer.loss_weights, discriminate(trainer.discriminator, outputs)
        )
    with trainer.accelerator.autocast():
        passes = discriminate(trainer.discriminator, outputs, detach_generated=True)
    discriminator_loss, _ = discriminator_objective(passes)
    generator_scaler, discriminator_scaler = trainer.accelerator.scaler, trainer.discriminator_update.scaler
    if generator_scaler is not None:
        generator_loss, discriminator_loss = (
            generator_scaler.scale(generator_loss),
            discriminator_scaler.scale(discriminator_loss),
        )
    gradients = torch.autograd.grad(generator_loss * scale, generator, retain_graph=True, allow_unused=True)
    gradients += torch.autograd.grad(discriminator_loss * scale, discriminator, retain_graph=True)
    return {id(p): g for p, g in zip(generator + discriminator, gradients) if g is not None}


@pytest.mark.parametrize(
    "overrides",
    [{}, {"gradient_accumulation_steps": 2}, {"precision": "fp16"}],
    ids=["fp32", "accumulation", "fp16"],
)
def test_one_discriminator_pass_gives_the_gradients_of_two(tmp_path, monkeypatch, overrides):
    """Every generator and discriminator gradient of a training step equals VITS's two-pass computation."""
    # a loss scale whose first step does not overflow in fp16 (the default 2**16 does here, and the scaler would skip
    # it): finite gradients compare
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=1.0))
    trainer = tiny_trainer(make_tiny_config(), str(tmp_path), max_steps=1, max_grad_norm=0, **overrides)
    # an evaluation before training leaves the model in eval mode: training_step must switch it back
    trainer.args.eval_on_start, trainer.args.eval_strategy, trainer.args.eval_steps = True, "steps", 1
    expected, modes = {}, []
    original_loss, original_step = trainer.compute_loss, trainer.discriminator_update.step

    def compute_loss(model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, (outputs, discriminated) = original_loss(model, inputs, return_outputs=True)
        if model.training:
            modes.append(True)
            for key, gradient in _two_pass_gradients(trainer, outputs).items():
                expected[key] = expected[key] + gradient if key in expected else gradient
        return (loss, (outputs, discriminated)) if return_outputs else loss

    actual = {}

    def discriminator_step(accelerator):
        if accelerator.sync_gradients:  # both backwards done, nothing stepped yet: every gradient as accumulated
            parameters = [*trainer.model.parameters(), *trainer.discriminator.parameters()]
            actual.update({id(p): p.grad.clone() for p in parameters if p.grad is not None})
        original_step(accelerator)

    trainer.compute_loss, trainer.discriminator_update.step = compute_loss, discriminator_step
    trainer.train()
    assert len(modes) == overrides.get("gradient_accumulation_steps", 1), "every micro-batch trained in train mode"
    names = {id(p): n for n, p in [*trainer.model.named_parameters(), *trainer.discriminator.named_parameters()]}
    assert actual.keys() == expected.keys()
    assert any("discriminators" in names[key] for key in actual) and any("decoder" in names[key] for key in actual)
    for key, gradient in expected.items():
        assert torch.isfinite(gradient).all(), names[key]
        torch.testing.assert_close(
            actual[key], gradient, rtol=1e-6, atol=1e-9, msg=lambda m, k=key: f"{names[k]}: {m}"
        )


def test_stop_and_resume_equals_straight_through(tmp_path):
    config = make_tiny_config()
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, logging_steps=1)
    straight = tiny_trainer(config, str(tmp_path / "straight"), **common)
    straight.train()

    stopped = tiny_trainer(config, str(tmp_path / "stopped"), callbacks=[StopAtStep(2)], **common)
    stopped.train()
    assert stopped.state.global_step == 2
    # a fresh process would start from other weights: the checkpoint must restore everything
    resumed = tiny_trainer(config, str(tmp_path / "stopped"), init_seed=123, **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "stopped" / "checkpoint-2"))

    assert resumed.state.global_step == 4
    expected, actual = _weights(straight), _weights(resumed)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    straight_losses = [e["loss"] for e in straight.state.log_history if "loss" in e]
    resumed_losses = [e["loss"] for e in resumed.state.log_history if "loss" in e]
    assert resumed_losses[-2:] == pytest.approx(straight_losses[-2:], rel=1e-5)


def test_resume_from_a_plain_model_folder_is_refused(tmp_path):
    config = make_tiny_config()
    folder = tmp_path / "plain"
    VitsModel(config).save_pretrained(folder)
    trainer = tiny_trainer(config, str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="not a checkpoint written by VitsTrainer"):
        trainer.train(resume_from_checkpoint=str(folder))


# -- time budget ---------------------------------------------------------------------------------------------------


def test_steps_that_fit():
    assert steps_that_fit(100.0, 10.0, 2, 5.0) == 2 + 18
    assert steps_that_fit(100.0, 10.0, 2, 5.0, reserve_seconds=10.0) == 2 + 16
    # an evaluation of 20 s every 4 steps costs 5 s per step
    assert steps_that_fit(100.0, 10.0, 2, 5.0, seconds_per_evaluation=20.0, eval_every=4) == 2 + 9
    assert steps_that_fit(10.0, 50.0, 7, 5.0) == 8  # over budget: still one step of progress
    with pytest.raises(ValueError):
        steps_that_fit(10.0, 0.0, 0, 0.0)


class _FakeClock(TrainerCallback):
    """Moves a fake clock by `seconds_per_step` at each step begin (the step's duration)."""

    def __init__(self, seconds_per_step):
        self.now = 0.0
        self.seconds_per_step = seconds_per_step

    def __call__(self):
        return self.now

    def on_step_begin(self, args, state, control, **kwargs):
        self.now += (
            self.seconds_per_step(state.global_step) if callable(self.seconds_per_step) else self.seconds_per_step
        )


def _budget_trainer(tmp_path, clock, **overrides):
    # the clock callback must run before the budget callback: it is passed at construction
    trainer = tiny_trainer(
        make_tiny_config(),
        str(tmp_path),
        discriminator=False,
        callbacks=[clock],
        max_steps=-1,
        target_hours=60 / 3600,
        target_hours_timing_steps=3,
        logging_steps=1,
        **overrides,
    )
    trainer.budget.clock = clock
    trainer.budget.started_at = 0.0
    return trainer


def test_time_budget_plans_max_steps_and_the_schedule(tmp_path):
    clock = _FakeClock(5.0)
    trainer = _budget_trainer(tmp_path, clock)
    trainer.train()
    # 3 timed steps (15 s), 5 s/step measured over steps 2-3, 10 s reserve: (60 - 15 - 10) / 5 = 7 more steps
    assert trainer.budget.planned_max_steps == 10
    assert trainer.state.max_steps == 10 and trainer.state.global_step == 10
    assert not trainer.budget.stopped_by_budget
    logged = {entry["step"]: entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry}
    # from step 4 on, the learning rates are those of a cosine schedule planned for 10 steps
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    reference = get_scheduler("cosine", optimizer, trainer.args.get_warmup_steps(10), 10)
    expected = []
    for _ in range(10):
        expected.append(reference.get_last_lr()[0])
        optimizer.step()
        reference.step()
    assert [logged[step] for step in range(4, 11)] == pytest.approx(expected[3:10], rel=1e-6)


def test_time_budget_stops_and_saves_when_steps_get_slower(tmp_path):
    # steps slow down from 5 s to 15 s after the plan: the deadline guard stops the run and saves
    clock = _FakeClock(lambda step: 5.0 if step < 4 else 15.0)
    trainer = _budget_trainer(tmp_path, clock, save_strategy="steps", save_steps=1000)
    trainer.train()
    assert trainer.budget.stopped_by_budget
    assert trainer.state.global_step < trainer.budget.planned_max_steps
    assert clock.now <= 60.0
    assert os.path.isdir(tmp_path / f"checkpoint-{trainer.state.global_step}")
