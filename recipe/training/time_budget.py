"""The time budget (`--target_hours`): time the first optimizer steps, plan `max_steps` to fit, stop in time.

The plan is made once, after `timing_steps` steps of this run: the step time is measured over steps 2..N (the first
pays for allocations and warm-up), evaluations are priced from the eval batches they run, and a reserve is kept for
the final save. The trainer then re-plans its learning-rate schedules for that many steps (`replan`). Whatever the
estimate, a deadline guard stops and saves once the budget would be overrun by one more step plus the reserve.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from transformers import TrainerCallback

from recipe.training.distributed import broadcast_from_main

logger = logging.getLogger(__name__)


def steps_that_fit(
    budget_seconds: float,
    elapsed_seconds: float,
    steps_done: int,
    seconds_per_step: float,
    seconds_per_evaluation: float = 0.0,
    eval_every: int | None = None,
    reserve_seconds: float = 0.0,
) -> int:
    """Total optimizer steps (done and to come) that fit in the budget.

    Args:
        budget_seconds (`float`): the whole budget.
        elapsed_seconds (`float`): time already spent.
        steps_done (`int`): optimizer steps already done.
        seconds_per_step (`float`): measured time of one optimizer step.
        seconds_per_evaluation (`float`, *optional*, defaults to 0): estimated time of one evaluation.
        eval_every (`int`, *optional*): evaluation period in steps; `None` when the run does not evaluate.
        reserve_seconds (`float`, *optional*, defaults to 0): kept free for the final save.

    Returns:
        `int`: at least `steps_done + 1`, so that a plan always makes progress.
    """
    if seconds_per_step <= 0:
        raise ValueError(f"seconds_per_step must be positive, not {seconds_per_step}")
    remaining = budget_seconds - elapsed_seconds - reserve_seconds
    # each step costs its own time plus its share of the evaluations that follow every `eval_every` steps
    cost_per_step = seconds_per_step + (seconds_per_evaluation / eval_every if eval_every else 0.0)
    return steps_done + max(1, math.floor(remaining / cost_per_step))


class TimeBudgetCallback(TrainerCallback):
    """Plans `max_steps` from the measured step time and stops the run before the budget is spent.

    Args:
        target_hours (`float`): the budget of this invocation, from `started_at`.
        timing_steps (`int`): optimizer steps timed before planning (the first one is not counted).
        replan (`Callable[[int], None]`): sets the total number of steps and re-plans the learning-rate schedules.
        eval_batches (`int`, *optional*, defaults to 0): batches one evaluation runs, to price evaluations.
        max_steps_cap (`int`, *optional*): the user's own `--max_steps`, never exceeded by the plan.
        already_planned (`Callable[[], bool]`, *optional*): whether a plan exists (a resumed run keeps its plan).
        started_at (`float`, *optional*): `clock()` value the budget counts from; defaults to the start of training.
        clock (`Callable[[], float]`, *optional*, defaults to `time.monotonic`): the clock, replaceable in tests.
    """

    def __init__(
        self,
        target_hours: float,
        timing_steps: int,
        replan: Callable[[int], None],
        eval_batches: int = 0,
        max_steps_cap: int | None = None,
        already_planned: Callable[[], bool] | None = None,
        started_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.budget_seconds = target_hours * 3600.0
        self.timing_steps = timing_steps
        self.replan = replan
        self.eval_batches = eval_batches
        self.max_steps_cap = max_steps_cap
        self.already_planned = already_planned or (lambda: False)
        self.started_at = started_at
        self.clock = clock
        self.seconds_per_step: float | None = None
        self.planned_max_steps: int | None = None
        self.stopped_by_budget = False
        self._first_step = 0
        self._first_step_done_at: float | None = None
        self._last_step_end: float | None = None
        self._longest_pause = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        if self.started_at is None:
            self.started_at = self.clock()
        self._first_step = state.global_step

    def on_step_begin(self, args, state, control, **kwargs):
        # the pause between two steps holds logging, evaluation and checkpoint saving: the longest one is the
        # reserve kept for the final save
        if self._last_step_end is not None:
            self._longest_pause = max(self._longest_pause, self.clock() - self._last_step_end)

    def on_step_end(self, args, state, control, **kwargs):
        now = self.clock()
        self._last_step_end = now
        steps_this_run = state.global_step - self._first_step
        if steps_this_run == 1:
            self._first_step_done_at = now
        if (
            self.planned_max_steps is None
            and not self.already_planned()
            and steps_this_run >= self.timing_steps
            and self._first_step_done_at is not None
        ):
            self._plan(args, state, now, steps_this_run)
        elapsed = now - self.started_at
        step_time = self.seconds_per_step or (elapsed / max(steps_this_run, 1))
        last_step = state.global_step >= state.max_steps  # the run ends and saves now anyway
        out_of_time = elapsed + step_time + self._reserve(step_time) > self.budget_seconds
        # processes must stop at the same step, or the ones still training wait forever on the others' gradients
        if not last_step and broadcast_from_main([float(out_of_time)], args.device)[0] > 0:
            logger.warning(
                f"--target_hours {self.budget_seconds / 3600:g}: stopping at step {state.global_step} after "
                f"{elapsed / 60:.1f} min to save before the budget runs out"
            )
            self.stopped_by_budget = True
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"
        return control

    def _reserve(self, step_time: float) -> float:
        return max(self._longest_pause, 2 * step_time)

    def _plan(self, args, state, now: float, steps_this_run: int) -> None:
        self.seconds_per_step = (now - self._first_step_done_at) / (steps_this_run - 1)
        eval_every = None
        if args.eval_strategy == "steps":
            eval_every = args.eval_steps if args.eval_steps >= 1 else max(1, int(args.eval_steps * state.max_steps))
        # an evaluation runs forward passes only, about a third of a training step per batch, plus the synthesis of
        # the amplitude monitor: price it at half a training step per batch
        seconds_per_evaluation = 0.5 * self.seconds_per_step * self.eval_batches
        planned = steps_that_fit(
            self.budget_seconds,
            now - self.started_at,
            state.global_step,
            self.seconds_per_step,
            seconds_per_evaluation=seconds_per_evaluation,
            eval_every=eval_every,
            reserve_seconds=self._reserve(self.seconds_per_step),
        )
        if self.max_steps_cap is not None:
            planned = min(planned, self.max_steps_cap)
        # every process follows the main process's plan: different schedules would make the replicas drift apart
        planned = int(broadcast_from_main([float(planned)], args.device)[0])
        self.planned_max_steps = planned
        logger.info(
            f"--target_hours {self.budget_seconds / 3600:g}: {self.seconds_per_step:.2f} s/step over "
            f"{steps_this_run - 1} steps; planning {planned} steps"
        )
        self.replan(planned)
