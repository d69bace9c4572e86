"""The argument dataclasses under their first name: `training_args.bin` files saved by earlier versions pickle
`recipe.config.VitsTrainingArguments`. Their home is `recipe.training.arguments`."""

from recipe.training.arguments import DataArguments, ModelArguments, VitsTrainingArguments

__all__ = ["DataArguments", "ModelArguments", "VitsTrainingArguments"]
