"""The warm-up of an imported voice's training-only parts from its own synthesis (recipe/warmup.py)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import DEMO_DIR, REPO_ROOT, load_benchmark, make_tiny_config
from transformers import VitsModel, set_seed

from recipe.piper.warmup import (
    WARMUP_BATCH_SIZE,
    WARMUP_LEARNING_RATE,
    WARMUP_STEPS,
    ProgressLog,
    synthesize_targets,
    warm_up_from_own_synthesis,
)
from recipe.voices import load_tokenizer

TEXTS = ["ez diçim malê", "baran dibare", "roj baş", "ev pirtûk e", "ava sar", "çiya bilind e"]


def test_targets_are_the_inference_pass():
    """The latent and durations kept are the ones `VitsModel.forward` decodes: same waveform for the same seed."""
    set_seed(0)
    vits = VitsModel(make_tiny_config()).eval()
    input_ids = torch.randint(1, 40, (9,))
    set_seed(4)
    target = synthesize_targets(vits, input_ids)
    set_seed(4)
    with torch.no_grad():
        expected = vits(input_ids=input_ids[None]).waveform[0]
    torch.testing.assert_close(target.waveform, expected)
    assert int(target.durations.sum()) == target.latents.shape[-1]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_warm_up_learns_the_posterior_and_leaves_inference_untouched(precision):
    set_seed(0)
    vits = VitsModel(make_tiny_config())
    tokenizer = load_tokenizer(str(DEMO_DIR / "tiny_model"))
    before = {name: value.clone() for name, value in vits.state_dict().items()}
    # what the posterior encoder's first convolution computes in, at each training step
    dtypes = set()
    vits.posterior_encoder.conv_pre.register_forward_hook(
        lambda module, inputs, output: dtypes.add(output.dtype) if torch.is_grad_enabled() else None
    )
    report = warm_up_from_own_synthesis(
        vits, tokenizer, TEXTS, steps=60, learning_rate=3e-3, batch_size=3, precision=precision
    )
    assert report["precision"] == precision
    assert dtypes == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert all(parameter.dtype == torch.float32 for parameter in vits.parameters())
    assert report["targets"] == len(TEXTS)
    assert report["posterior_loss_last"] < 0.8 * report["posterior_loss_first"]
    assert report["duration_nll_last"] < report["duration_nll_first"]
    trained = ("posterior_encoder.", "duration_predictor.post_", "duration_predictor.flows.1.")
    for name, value in vits.state_dict().items():
        if name.startswith(trained):
            continue
        assert torch.equal(value, before[name]), f"{name} moved"
    assert any(not torch.equal(vits.state_dict()[n], before[n]) for n in before if n.startswith("posterior_encoder."))
    assert all(parameter.requires_grad for parameter in vits.parameters())


def test_the_warm_up_logs_its_progress_from_the_first_text_and_the_first_step(caplog):
    set_seed(0)
    vits = VitsModel(make_tiny_config())
    tokenizer = load_tokenizer(str(DEMO_DIR / "tiny_model"))
    with caplog.at_level(logging.INFO, logger="recipe.piper.warmup"):
        warm_up_from_own_synthesis(vits, tokenizer, TEXTS, steps=30, learning_rate=3e-3, batch_size=3)
    messages = caplog.messages
    assert messages[0].startswith(f"Synthesizing {len(TEXTS)} texts")
    assert messages[1].startswith(f"synthesized 1/{len(TEXTS)} texts | ") and " s/text, ETA " in messages[1]
    steps = [int(re.match(r"warm-up step (\d+)/30: ", m).group(1)) for m in messages if m.startswith("warm-up step")]
    # every one of the first steps, then every 25 steps or 30 s (`ProgressLog`, tested below), and the last
    assert steps[:3] == [1, 2, 3] and steps[-1] == 30 and len(steps) < 10, steps
    step_line = next(m for m in messages if m.startswith("warm-up step 1/30: "))
    assert re.search(r"posterior loss [\d.]+, duration NLL [-\d.]+ \| [\d.]+ s/step, ETA \d+:\d\d:\d\d$", step_line)


def test_progress_is_logged_for_the_first_items_then_every_n_items_or_seconds_and_at_the_end():
    now = [0.0]
    progress = ProgressLog(100, "s/step", first=3, every=25, seconds=30.0, clock=lambda: now[0])
    logged = []
    for done in range(1, 101):
        now[0] += 1.0 if done < 60 else 10.0  # steps slow down after the 60th: the 30 s interval takes over
        if progress.due(done):
            logged.append(done)
    # 28, 53: 25 steps apart; from the 62nd (36 s after the 53rd), every 30 s: 3 steps; the 100th is the last
    assert logged == [1, 2, 3, 28, 53, *range(62, 99, 3), 100]
    now[0] = 0.0
    progress = ProgressLog(100, "s/step", clock=lambda: now[0])
    now[0] = 20.0
    assert progress.rate_and_eta(10) == "2.00 s/step, ETA 0:03:00"


def test_a_warm_up_that_does_not_lower_the_posterior_loss_is_an_error():
    set_seed(0)
    vits = VitsModel(make_tiny_config())
    tokenizer = load_tokenizer(str(DEMO_DIR / "tiny_model"))
    # a learning rate the random posterior encoder diverges at (measured: 3e5 -> 5e7)
    with pytest.raises(ValueError, match=r"did not lower the posterior loss .* of 8 steps at learning rate 1\b"):
        warm_up_from_own_synthesis(vits, tokenizer, TEXTS, steps=8, learning_rate=1.0, batch_size=3)
    # one step cannot show a fall: the first and the last loss are the same step's
    with pytest.raises(ValueError, match=r"of 1 steps at learning rate 0.0006"):
        warm_up_from_own_synthesis(vits, tokenizer, TEXTS, steps=1, batch_size=3)


def test_the_warm_up_command_and_the_real_voice_benchmark_default_to_the_warm_up_defaults(tmp_path, monkeypatch):
    command = [sys.executable, "-m", "recipe.piper", "warmup", "--help"]
    environment = {**os.environ, "COLUMNS": "200"}  # each help text on one line
    result = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=True)
    options = dict(re.findall(r"^  (--\w+) [A-Z_]+\s+[^(\n]*\(default ([^)]+)\)$", result.stdout, flags=re.MULTILINE))
    assert options == {
        "--steps": str(WARMUP_STEPS),
        "--learning_rate": str(WARMUP_LEARNING_RATE),
        "--batch_size": str(WARMUP_BATCH_SIZE),
    }

    real_voice = load_benchmark("real_voice")
    seen = []
    monkeypatch.setattr(real_voice, "warmup", lambda args, results: seen.append(args))
    real_voice.main(["--stages", "warmup", "--work_dir", str(tmp_path)])
    (args,) = seen
    assert (args.warmup_steps, args.warmup_learning_rate, args.batch_size) == (
        WARMUP_STEPS,
        WARMUP_LEARNING_RATE,
        WARMUP_BATCH_SIZE,
    )


def test_the_real_voice_benchmark_second_voices():
    """--second_voice: Joe moved in pitch (resampled: shorter by the factor), or another speaker by CMU Flite at the
    voice's rate; anything else is refused."""
    real_voice = load_benchmark("real_voice")
    joe = np.sin(np.linspace(0, 2000, 22050)).astype(np.float32)
    shifted = real_voice.second_voice("joe_shifted", 22050, 12.0)("a sentence", joe)
    assert abs(len(shifted) - len(joe) / 2) <= 2
    with pytest.raises(SystemExit, match="use joe_shifted or flite:VOICE"):
        real_voice.second_voice("espeak:en", 22050, 4.0)
    if shutil.which("flite") is None:
        pytest.skip("CMU Flite is not installed (apt-get install flite)")
    spoken = real_voice.second_voice("flite:slt", 22050, 4.0)("the river was cold", joe)
    assert spoken.dtype == np.float32 and 0.5 * 22050 < len(spoken) < 3 * 22050
    assert 0.01 < float(np.sqrt(np.mean(spoken**2))) < 0.5


def test_a_shared_work_dir_renders_only_its_own_second_voice(tmp_path):
    """--share_from a work dir whose second voice is another: Joe, the import and the warm-up are linked, the second
    voice is rendered here from the shared Joe clips (and is not the base's); the same voice is linked."""
    real_voice = load_benchmark("real_voice")
    base, work = tmp_path / "base", tmp_path / "work"
    joe = [np.sin(np.linspace(0, 400 * (i + 1), 22050)).astype(np.float32) for i in range(3)]
    real_voice.write_ljspeech(str(base / "joe"), ["one", "two", "three"], joe, 22050)
    real_voice.write_ljspeech(str(base / "joe_heldout"), ["four"], joe[:1], 22050)
    for folder in ("second", "second_heldout", "joe_imported", "joe_warm"):
        (base / folder).mkdir()
    (base / "heldout.txt").write_text("four\n")
    stages = {"render": {"second_voice": "flite:slt"}, "import": {}, "warmup": {}}
    (base / "results.json").write_text(json.dumps(stages))
    work.mkdir()
    results = {}
    assert not real_voice.share(str(base), str(work), results, "joe_shifted")
    assert os.path.islink(work / "joe_warm") and not os.path.lexists(work / "second")
    args = argparse.Namespace(
        work_dir=str(work), second_voice="joe_shifted", second_voice_semitones=12.0, second_voice_seconds=60.0
    )
    real_voice.render_second_from_shared(args, results)
    assert results["render"]["second_voice"] == "joe_shifted"
    shifted, _ = sf.read(work / "second" / "wavs" / "000.wav")
    assert abs(len(shifted) - 22050 / 2) <= 2 and not os.path.islink(work / "second")
    assert real_voice.share(str(base), str(work), results, "joe_shifted")  # an earlier render is kept
    assert results["render"]["second_voice"] == "joe_shifted"
    (tmp_path / "same").mkdir()
    assert real_voice.share(str(base), str(tmp_path / "same"), {}, "flite:slt")
    assert os.path.islink(tmp_path / "same" / "second")
