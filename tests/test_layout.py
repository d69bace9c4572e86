"""The package's layering rule, the GPL boundary of the `piper` extra, and the paths users already depend on."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "recipe"
# modules that only piper/ and export/ may import (piper-tts is GPL-3.0; onnx / onnxruntime are optional extras)
OPTIONAL_RUNTIMES = ("piper", "onnx", "onnxruntime", "sherpa_onnx")


def _recipe_imports(path: Path) -> set[str]:
    """The `recipe.*` modules a file imports, at any depth (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recipe"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("recipe"))
    return found


def _modules_under(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py")) if (PACKAGE / folder).is_dir() else [PACKAGE / f"{folder}.py"]


@pytest.mark.parametrize("leaf", ["audio", "text"])
def test_the_shared_leaves_import_nothing_of_the_recipe(leaf):
    assert _recipe_imports(PACKAGE / f"{leaf}.py") == set()


@pytest.mark.parametrize("subpackage", ["data", "model"])
def test_data_and_model_never_import_training(subpackage):
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(m for m in _recipe_imports(path) if m.startswith("recipe.training"))
        for path in _modules_under(subpackage)
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def test_no_module_is_over_500_lines():
    long = {
        str(path.relative_to(REPO_ROOT)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert long == {}


def test_the_trainer_and_the_command_stay_short():
    """`VitsTrainer` keeps its Trainer hooks, each delegating; `run_finetune.main` keeps numbered steps of a few calls."""
    import inspect

    import run_finetune
    from recipe.training.trainer import VitsTrainer

    assert len(inspect.getsource(VitsTrainer).splitlines()) < 300
    assert len(inspect.getsource(run_finetune.main).splitlines()) < 80


def test_optional_runtimes_are_imported_only_under_piper_and_export():
    """At module level nowhere; inside functions only under `recipe/piper/` and `recipe/export/`, and in
    `recipe/data/quality.py` (the `quality` extra's DNSMOS model, loaded only with --min_quality)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        allowed_inside_functions = relative.parts[0] in ("piper", "export") or relative.as_posix() == "data/quality.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = set(id(node) for node in tree.body)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in OPTIONAL_RUNTIMES and (id(node) in top_level or not allowed_inside_functions):
                    offenders.append(f"{relative}:{node.lineno} imports {name}")
    assert offenders == []


def test_training_and_voices_load_no_gpl_or_onnx_module():
    """The GPL boundary of the `piper` extra as a test: a fresh interpreter imports the training side and the voice
    loader (and the command script) and finds none of piper-tts, onnx, onnxruntime in `sys.modules`."""
    code = (
        "import sys, run_finetune, recipe.training.trainer, recipe.training.callbacks, recipe.voices, "
        "recipe.evaluation.compare; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL_RUNTIMES!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_paths_users_depend_on_still_import():
    from recipe.config import DataArguments, ModelArguments, VitsTrainingArguments
    from recipe.evaluation import mel_cepstral_distortion
    from recipe.export import export_voice
    from recipe.training import arguments
    from recipe.voices import load_voice

    assert VitsTrainingArguments is arguments.VitsTrainingArguments
    assert (ModelArguments, DataArguments) == (arguments.ModelArguments, arguments.DataArguments)
    assert callable(load_voice) and callable(export_voice) and callable(mel_cepstral_distortion)


def test_a_training_args_bin_saved_before_the_layout_change_loads():
    """`fixtures/training_args_pre_layout.bin` was pickled by the flat package (`recipe.config.VitsTrainingArguments`)."""
    from recipe.training.arguments import VitsTrainingArguments

    args = torch.load(REPO_ROOT / "tests" / "fixtures" / "training_args_pre_layout.bin", weights_only=False)
    assert isinstance(args, VitsTrainingArguments)
    assert (args.max_steps, args.learning_rate, args.output_dir) == (7, 3e-5, "outputs/pre-move")


@pytest.mark.parametrize(
    "command",
    [
        ["run_finetune.py"],
        ["-m", "recipe.compare"],
        ["-m", "recipe.piper"],
        ["-m", "recipe.piper", "import"],
        ["-m", "recipe.piper", "warmup"],
        ["-m", "recipe.export"],
    ],
    ids=lambda c: " ".join(c),
)
def test_every_command_answers_help(command):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, *command, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
