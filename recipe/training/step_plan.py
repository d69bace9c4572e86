"""The step plan of `--target_hours`: how many optimizer steps the run makes in all, and the schedules planned for it.

`TimeBudgetCallback` (`recipe.training.time_budget`) times the first steps and decides the number; the trainer then
re-plans its learning-rate schedules for it (`schedule_at`: a schedule positioned at the current step). Until then
`max_steps` is a provisional upper bound (`bound_max_steps`). The plan is saved in each checkpoint's
`training_state/` (`StepPlan.save`), so that a resumed run keeps the plan it was started with. `time_budget` makes
the callback.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable

from transformers.optimization import get_scheduler

from recipe.training.checkpoint_layout import TRAINING_STATE_DIR
from recipe.training.time_budget import TimeBudgetCallback

PLAN_FILE = "plan.json"
# `max_steps` while `--target_hours` times the first steps: an upper bound, lowered by the plan
PROVISIONAL_MAX_STEPS = 10_000_000


class StepPlan:
    """The total number of optimizer steps planned for the run (`max_steps`), `None` until `--target_hours` plans."""

    def __init__(self):
        self.max_steps: int | None = None

    def save(self, checkpoint: str) -> None:
        """Write the plan into `checkpoint`'s `training_state/`."""
        with open(os.path.join(checkpoint, TRAINING_STATE_DIR, PLAN_FILE), "w") as handle:
            json.dump({"planned_max_steps": self.max_steps}, handle)

    def load(self, checkpoint: str) -> None:
        """Read the plan from `checkpoint`'s `training_state/` when it holds one."""
        path = os.path.join(checkpoint, TRAINING_STATE_DIR, PLAN_FILE)
        if os.path.isfile(path):
            with open(path) as handle:
                self.max_steps = json.load(handle)["planned_max_steps"]


def bound_max_steps(args) -> int | None:
    """The user's own `--max_steps`, the cap of the plan (`None` when not given); under `--target_hours` without it,
    `args.max_steps` becomes `PROVISIONAL_MAX_STEPS`: the epoch loop is sized from `max_steps` before the plan exists.
    """
    max_steps_cap = args.max_steps if args.max_steps > 0 else None
    if args.target_hours is not None and args.max_steps <= 0:
        args.max_steps = PROVISIONAL_MAX_STEPS
    return max_steps_cap


def time_budget(
    args,
    eval_dataset,
    plan: StepPlan,
    replan: Callable[[int], None],
    max_steps_cap: int | None,
    started_at: float | None,
) -> TimeBudgetCallback | None:
    """The callback that plans `plan` under `--target_hours` and stops the run in time; `None` without it.

    Args:
        args (`VitsTrainingArguments`): the run's arguments.
        eval_dataset (`datasets.Dataset`, *optional*): the eval split, to price evaluations.
        plan (`StepPlan`): the plan; a resumed run that has one keeps it.
        replan (`Callable[[int], None]`): the trainer's re-planning of its schedules for a number of steps.
        max_steps_cap (`int`, *optional*): the user's own `--max_steps` (`bound_max_steps`).
        started_at (`float`, *optional*): `time.monotonic()` value the budget counts from.
    """
    if args.target_hours is None:
        return None
    return TimeBudgetCallback(
        target_hours=args.target_hours,
        timing_steps=args.target_hours_timing_steps,
        replan=replan,
        eval_batches=_batches_per_evaluation(args, eval_dataset),
        max_steps_cap=max_steps_cap,
        already_planned=lambda: plan.max_steps is not None,
        started_at=started_at,
    )


def _batches_per_evaluation(args, eval_dataset) -> int:
    """The batches one evaluation runs on each process, to price evaluations; 0 when the run does not evaluate."""
    if eval_dataset is None or args.eval_strategy == "no":
        return 0
    per_step = args.per_device_eval_batch_size * max(1, args.world_size)
    return math.ceil(len(eval_dataset) / per_step)


def schedule_at(args, optimizer, num_training_steps: int, current_step: int):
    """`args.lr_scheduler_type` planned for `num_training_steps`, positioned at `current_step`."""
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=args.get_warmup_steps(num_training_steps),
        num_training_steps=num_training_steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )
    if current_step > 0:
        # the schedules are closed-form in the step (LambdaLR): jump to it
        scheduler.last_epoch = current_step - 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            scheduler.step()
    return scheduler
