"""`--part_learning_rates`: parsing, the parts it may name, the optimizer's groups, and a run that honours them."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_config
from trainer_helpers import tiny_trainer
from transformers import VitsModel

from recipe.errors import ArgumentsError
from recipe.training.arguments import VitsTrainingArguments
from recipe.training.part_learning_rates import (
    apply_part_learning_rates,
    check_part_learning_rates,
    parse_part_learning_rates,
)


def test_parsing_takes_prefixes_and_positive_rates():
    assert parse_part_learning_rates(None) == {} and parse_part_learning_rates("") == {}
    assert parse_part_learning_rates("duration_predictor:2e-6, flow.:1e-4") == {
        "duration_predictor": 2e-6,
        "flow": 1e-4,
    }
    for bad in ("duration_predictor", "duration_predictor:0", "duration_predictor:fast", ":1e-5", "a:1e-5,a:2e-5"):
        with pytest.raises(ValueError, match="--part_learning_rates"):
            parse_part_learning_rates(bad)


def test_a_bad_value_is_refused_when_the_arguments_are_parsed(tmp_path):
    with pytest.raises(ValueError, match="PREFIX:RATE"):
        VitsTrainingArguments(output_dir=str(tmp_path), part_learning_rates="duration_predictor=1e-6")


def test_a_part_must_name_trainable_weights():
    vits = VitsModel(make_tiny_config())
    check_part_learning_rates(vits, {"duration_predictor": 1e-6, "duration_predictor.flows": 1e-5})
    with pytest.raises(ArgumentsError, match="names no weight.*duration_predictor"):
        check_part_learning_rates(vits, {"duration": 1e-6})  # a prefix at a dot, not of a name
    for parameter in vits.duration_predictor.parameters():
        parameter.requires_grad_(False)
    with pytest.raises(ArgumentsError, match="frozen.*--freeze_duration_predictor false"):
        check_part_learning_rates(vits, {"duration_predictor": 1e-6})


def test_each_part_gets_its_own_groups_and_the_longest_prefix_wins():
    vits = VitsModel(make_tiny_config())
    named = dict(vits.named_parameters())
    decay = [p for n, p in named.items() if n.endswith("weight")]
    no_decay = [p for n, p in named.items() if not n.endswith("weight")]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3
    )
    rates = {"duration_predictor": 1e-6, "duration_predictor.flows": 1e-5}
    apply_part_learning_rates(optimizer, vits, rates)

    rate_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert len(rate_of) == len(named)  # every weight once
    for name, parameter in named.items():
        expected = (
            1e-5 if name.startswith("duration_predictor.flows.")
            else 1e-6 if name.startswith("duration_predictor.")
            else 1e-3
        )  # fmt: skip
        assert rate_of[id(parameter)] == expected, name
        assert decay_of[id(parameter)] == (0.01 if name.endswith("weight") else 0.0)


def test_a_run_moves_the_part_at_its_rate_and_the_schedule_scales_every_group(tmp_path):
    trainer = tiny_trainer(
        make_tiny_config(),
        str(tmp_path),
        discriminator=False,
        learning_rate=1e-3,
        part_learning_rates="duration_predictor:1e-7",
        warmup_ratio=0.0,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
    )
    vits = trainer.model.vits
    start = {name: p.detach().clone() for name, p in vits.named_parameters()}
    trainer.train()
    groups = {group.get("part"): group["lr"] for group in trainer.optimizer.param_groups}
    assert groups == {None: pytest.approx(1e-3), "duration_predictor": pytest.approx(1e-7)}

    def largest_change(prefix):
        return max(
            (p.detach() - start[name]).abs().max().item()
            for name, p in vits.named_parameters()
            if name.startswith(prefix) and p.requires_grad
        )

    # AdamW moves a weight by about its rate per step (4 steps): the duration predictor by ~4e-7, the flow by ~4e-3
    assert largest_change("duration_predictor.") < 1e-6 < 1e-4 < largest_change("flow.")
