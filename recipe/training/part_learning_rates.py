"""`--part_learning_rates`: parts of the model that train at their own peak learning rate.

    rates = parse_part_learning_rates("duration_predictor:2e-6")     # {"duration_predictor": 2e-6}
    check_part_learning_rates(vits, rates)                            # each part names trainable weights
    apply_part_learning_rates(optimizer, vits, rates)                  # after Trainer made its AdamW
    class VitsTrainer(PartLearningRatesMixin, ..., Trainer)            # does both in `create_optimizer`

A part is a prefix of the `VitsModel`'s parameter names, at a dot: a submodule (`duration_predictor`, `flow`,
`decoder`) or a part of one (`duration_predictor.flows`, `duration_predictor.conv_proj`). A weight takes the rate
of the longest prefix that names it; every other weight keeps `--learning_rate`. The schedule (warm-up, cosine)
scales every rate alike, and weight decay stays as Trainer set it. A frozen part (`--freeze_*`) has no trainable
weight to give a rate to: naming one is an error, as is a prefix that names no weight.
"""

from __future__ import annotations

from recipe.errors import ArgumentsError

FLAG = "--part_learning_rates"


def parse_part_learning_rates(text: str | None) -> dict[str, float]:
    """`{prefix: rate}` of `"PREFIX:RATE,PREFIX:RATE"`; empty for `None` or "".

    Raises:
        `ValueError`: an entry without `:`, a rate that is not a positive number, a prefix given twice.
    """
    rates: dict[str, float] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        prefix, colon, value = entry.strip().rpartition(":")
        prefix = prefix.strip().strip(".")
        try:
            rate = float(value)
        except ValueError:
            rate = None
        if not colon or not prefix or rate is None or not rate > 0:
            raise ValueError(
                f"{FLAG} {text!r}: each entry is PREFIX:RATE with a positive rate, e.g. 'duration_predictor:2e-6', "
                f"not {entry.strip()!r}"
            )
        if prefix in rates:
            raise ValueError(f"{FLAG} {text!r}: {prefix!r} is given twice")
        rates[prefix] = rate
    return rates


def _part_of(name: str, rates: dict[str, float]) -> str | None:
    """The longest prefix of `rates` that names the parameter `name` (at a dot), else `None`."""
    matches = [prefix for prefix in rates if name == prefix or name.startswith(prefix + ".")]
    return max(matches, key=len) if matches else None


def check_part_learning_rates(vits, rates: dict[str, float]) -> None:
    """Each prefix names at least one trainable weight of `vits`.

    Raises:
        `ArgumentsError`: a prefix that names no weight (the model's top-level parts are listed), or only frozen
            ones.
    """
    for prefix in rates:
        named = [parameter for name, parameter in vits.named_parameters() if _part_of(name, {prefix: 0.0})]
        if not named:
            parts = sorted({name.split(".")[0] for name, _ in vits.named_parameters()})
            raise ArgumentsError(
                f"{FLAG}: {prefix!r} names no weight of the model; its parts are {', '.join(parts)} (or a part of "
                "one, e.g. duration_predictor.flows)"
            )
        if not any(parameter.requires_grad for parameter in named):
            raise ArgumentsError(
                f"{FLAG}: every weight of {prefix!r} is frozen (a --freeze_* flag, e.g. --freeze_duration_predictor "
                "false to train it)"
            )


def apply_part_learning_rates(optimizer, vits, rates: dict[str, float]) -> None:
    """Move the weights of each part out of the optimizer's groups into groups of their own (one per part and
    original group, keeping its weight decay and other settings) at the part's rate. To be called on a fresh
    optimizer, before the schedule is made (which takes each group's rate as its peak) and before any step."""
    if not rates:
        return
    part_of = {id(parameter): _part_of(name, rates) for name, parameter in vits.named_parameters()}
    new_groups = []
    for group in list(optimizer.param_groups):
        by_part: dict[str, list] = {}
        kept = []
        for parameter in group["params"]:
            part = part_of.get(id(parameter))
            (by_part.setdefault(part, []) if part is not None else kept).append(parameter)
        group["params"] = kept
        for part, parameters in by_part.items():
            settings = {key: value for key, value in group.items() if key != "params"}
            new_groups.append({**settings, "params": parameters, "lr": rates[part], "part": part})
    optimizer.param_groups[:] = [group for group in optimizer.param_groups if group["params"]]
    for group in new_groups:
        optimizer.add_param_group(group)


class PartLearningRatesMixin:
    """A `Trainer` mixin: `create_optimizer` makes Trainer's optimizer, then the groups of `--part_learning_rates`
    (`self.args.part_learning_rates`) over the weights of `self.model.vits`, before the schedule reads their rates."""

    def create_optimizer(self, model=None):
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        rates = parse_part_learning_rates(getattr(self.args, "part_learning_rates", None))
        if fresh and rates:
            check_part_learning_rates(self.model.vits, rates)
            apply_part_learning_rates(optimizer, self.model.vits, rates)
        return optimizer
