"""Arguments of `run_finetune.py`, parsed by `HfArgumentParser` from flags or one JSON / YAML file.

Three groups, as in the `transformers` example scripts: what model to start from (`ModelArguments`), what data to
train on (`DataArguments`) and how to train (`VitsTrainingArguments`, a `TrainingArguments` with the VITS loss
weights, the anti-silence objectives, the amplitude monitor and the time budget).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import cached_property

import torch
from transformers import TrainingArguments

from recipe.data.sources import AUTO, DATASET_FORMAT_HELP, DATASET_FORMATS, check_dataset_format
from recipe.data.speaker_choice import parse_speakers
from recipe.model.losses import LossWeights
from recipe.training.adaptation_arguments import AdaptationArguments
from recipe.training.amplitude_monitor import DEFAULT_CRITICAL_RATIO, DEFAULT_PATIENCE, DEFAULT_WARNING_RATIO
from recipe.training.listening_arguments import ListeningArguments
from recipe.training.precision import requested_precision, resolved_precision
from recipe.training.sampling_arguments import SpeakerSamplingArguments
from recipe.training.screening_arguments import ScreeningArguments


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A Hub id or a folder holding a VitsModel (e.g. facebook/mms-tts-kmr-script_latin)."},
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "A VitsConfig JSON to build a fresh, randomly initialized model from (instead of weights)."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer folder or Hub id; defaults to model_name_or_path."}
    )
    model_revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit)."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models and datasets."})
    discriminator: str = field(
        default="auto",
        metadata={
            "help": "'auto' (the discriminator saved in a local --model_name_or_path folder by an earlier round of "
            "this recipe, else a fresh one), 'random' (fresh multi-period + scale discriminator), 'none' (no "
            "adversarial terms), or weights: a '*-train' checkpoint with 'discriminator.*' keys (a local folder or a "
            "Hub id such as ylacombe/mms-tts-eng-train), or a discriminator this recipe saved."
        },
    )
    discriminator_config_name: str | None = field(
        default=None,
        metadata={
            "help": "With --discriminator random: a JSON of recipe.model.discriminator.DiscriminatorConfig fields (e.g. a "
            "smaller discriminator for CPU demos); VITS's architecture when not given."
        },
    )
    freeze_text_encoder: bool = field(default=False, metadata={"help": "Keep the text encoder's weights fixed."})
    freeze_duration_predictor: bool = field(default=False, metadata={"help": "Keep the duration predictor fixed."})
    freeze_posterior_encoder: bool = field(default=False, metadata={"help": "Keep the posterior encoder fixed."})
    freeze_flow: bool = field(default=False, metadata={"help": "Keep the flow fixed."})
    freeze_decoder: bool = field(default=False, metadata={"help": "Keep the HiFi-GAN decoder fixed."})
    warmup_untrained_parts: bool = field(
        default=False,
        metadata={
            "help": "Train only the parts an imported voice lacks (the `untrained_prefixes` of the model folder's "
            "import_report.json: posterior encoder, the duration predictor's posterior flows): everything inference "
            "uses stays frozen, through the VITS objectives on the recordings: the slower alternative to "
            "`python -m recipe.piper warmup` (docs/piper.md, 'Warm-up')."
        },
    )
    hub_include_discriminator: bool = field(
        default=False,
        metadata={"help": "With --push_to_hub: upload the discriminator too, so that others can go on fine-tuning."},
    )
    extend_vocabulary: bool = field(
        default=False,
        metadata={
            "help": "Add the letters and marks the data uses and the tokenizer lacks (listed in the data report as "
            "not_in_vocabulary) to the tokenizer and the text encoder's embedding, before tokenizing. Digits, "
            "punctuation and symbols are never added (vocabulary_report.json lists them under 'skipped', with why): "
            "write numbers out in words."
        },
    )
    init_new_tokens_from: str | None = field(
        default=None,
        metadata={
            "help": "With --extend_vocabulary: new rows that start as a similar letter's row, e.g. 'ş:s,ê:e'. "
            "Other new rows start as the mean of the existing rows."
        },
    )
    freeze_original_embeddings: bool = field(
        default=False,
        metadata={
            "help": "With --extend_vocabulary: keep the original embedding rows bit-identical (gradient mask, and "
            "restored after each optimizer step against weight decay) while the new rows learn."
        },
    )

    def __post_init__(self):
        if self.model_name_or_path is not None and self.config_name is not None:
            raise ValueError(
                f"Give --model_name_or_path ({self.model_name_or_path!r}, weights to fine-tune) or --config_name "
                f"({self.config_name!r}, a fresh random model), not both: one of them would be ignored"
            )
        for name in ("init_new_tokens_from", "freeze_original_embeddings"):
            if getattr(self, name) and not self.extend_vocabulary:
                raise ValueError(f"--{name} only applies with --extend_vocabulary")


@dataclass
class DataArguments(ScreeningArguments):
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "The dataset: a Hub dataset id or a local folder or file, in one of the layouts --dataset_format "
            "lists."
        },
    )
    dataset_format: str = field(
        default=AUTO, metadata={"help": f"The layout of --dataset_name: {DATASET_FORMAT_HELP}."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration (e.g. 'kmr')."})
    train_split_name: str = field(default="train", metadata={"help": "The split to train on."})
    eval_split_name: str | None = field(
        default=None,
        metadata={
            "help": "The split to evaluate on. Defaults to the source's dev / validation split when it has one, "
            "else a deterministic eval_fraction of the training split."
        },
    )
    eval_fraction: float = field(
        default=0.05, metadata={"help": "Share of the training split held out when the source has no eval split."}
    )
    audio_column_name: str = field(default="audio", metadata={"help": "Column with the audio (hub format)."})
    text_column_name: str = field(default="text", metadata={"help": "Column with the transcription (hub format)."})
    speaker_id_column_name: str | None = field(default=None, metadata={"help": "Column with a speaker id."})
    speaker_id: str | None = field(
        default=None,
        metadata={
            "help": "Keep one speaker: its id, 'top' for the speaker with the most audio (from the file headers), or "
            "'best' for the one whose audio the screening keeps most of: the highest minutes kept x share of its "
            "clips kept (every speaker is featurized to rank them; data_report.json lists the ranking)."
        },
    )
    speakers: str | None = field(
        default=None,
        metadata={
            "help": "Train several speakers into one multi-speaker model, each with its own voice: 'all', 'top:N' "
            "(the N with the most audio), 'min_minutes:M' (every speaker with at least M minutes), 'best:N' (the N "
            "with the highest minutes kept after screening x share of their clips kept, as --speaker_id best) or a "
            "comma-separated list of ids. A single-speaker model is made multi-speaker (recipe.model.speakers); "
            "the eval split is held out per speaker. Not with --speaker_id."
        },
    )
    min_duration_in_seconds: float = field(default=0.5, metadata={"help": "Drop shorter clips."})
    max_duration_in_seconds: float = field(default=20.0, metadata={"help": "Drop longer clips."})
    max_tokens_length: int = field(default=500, metadata={"help": "Drop texts with more tokens than this."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep at most this many training clips."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep at most this many eval clips."})
    max_bad_fraction: float = field(
        default=0.05,
        metadata={
            "help": "Stop when more than this share of a split's clips is broken: missing, undecodable, truncated, "
            "holding NaN / inf samples, or outside the dataset folder."
        },
    )
    keep_clips_with_dropped_characters: bool = field(
        default=False,
        metadata={
            "help": "Train on clips whose text has letters or digits the tokenizer's vocabulary lacks, with those "
            "characters deleted (while the recording says them). By default such clips are dropped as "
            "'text_not_in_vocabulary'."
        },
    )
    max_text_not_in_vocabulary_fraction: float = field(
        default=0.05,
        metadata={
            "help": "Stop before featurizing when more than this share of a split's clips would be dropped as "
            "'text_not_in_vocabulary', naming the characters (add letters with --extend_vocabulary, write numbers "
            "out in words)."
        },
    )
    allow_audio_outside_dataset: bool = field(
        default=False,
        metadata={
            "help": "Read audio paths that lead outside the dataset folder (absolute paths elsewhere), for a saved "
            "dataset or a parquet file. Refused for Common Voice, LJSpeech and audiofolder layouts, whose clips "
            "live in the folder."
        },
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for datasets.map."})
    preprocessing_only: bool = field(default=False, metadata={"help": "Build the feature cache, then exit."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where downloaded data and the Arrow feature cache are stored."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Rebuild the feature cache."})
    replay_dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Earlier training data mixed into this round's training set against forgetting (any layout "
            "--dataset_name takes; read with the same column and filter arguments)."
        },
    )
    replay_dataset_format: str = field(
        default=AUTO,
        metadata={"help": f"The layout of --replay_dataset_name, as --dataset_format: {' | '.join(DATASET_FORMATS)}."},
    )
    replay_fraction: float | None = field(
        default=None,
        metadata={"help": "With --replay_dataset_name: the share of the training set taken from it (e.g. 0.2)."},
    )

    def __post_init__(self):
        # Checked here so that a typo fails at argument parsing, before any data is read.
        check_dataset_format("--dataset_format", self.dataset_format)
        # an empty value clears a choice a config file made (`configs/x.json --speaker_id "" --speakers top:4`)
        self.speaker_id = self.speaker_id or None
        self.speakers = self.speakers or None
        if self.speakers is not None:
            if self.speaker_id is not None:
                raise ValueError(
                    f"--speaker_id {self.speaker_id!r} keeps one speaker, --speakers {self.speakers!r} several: "
                    "give one of them"
                )
            parse_speakers(self.speakers)
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"--eval_fraction must be between 0 and 1 (exclusive), not {self.eval_fraction}")
        for name in ("max_bad_fraction", "max_text_not_in_vocabulary_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name} must be between 0 and 1, not {getattr(self, name)}")
        self.check_screening()
        if not 0 <= self.min_duration_in_seconds < self.max_duration_in_seconds:
            raise ValueError(
                "Need 0 <= --min_duration_in_seconds < --max_duration_in_seconds, got "
                f"{self.min_duration_in_seconds} and {self.max_duration_in_seconds}"
            )
        if self.max_tokens_length < 1:
            raise ValueError(f"--max_tokens_length must be positive, not {self.max_tokens_length}")
        check_dataset_format("--replay_dataset_format", self.replay_dataset_format)
        if (self.replay_dataset_name is None) != (self.replay_fraction is None):
            raise ValueError("--replay_dataset_name and --replay_fraction go together: give both or neither")
        if self.replay_fraction is not None and not 0 < self.replay_fraction < 1:
            raise ValueError(f"--replay_fraction must be between 0 and 1 (exclusive), not {self.replay_fraction}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be positive, not {value}")


@dataclass
class VitsTrainingArguments(SpeakerSamplingArguments, ListeningArguments, AdaptationArguments, TrainingArguments):
    """`TrainingArguments` with VITS objectives and fine-tuning defaults.

    Defaults changed from `TrainingArguments`, each for fine-tuning a pretrained VITS:
        - `learning_rate` 2e-5: higher rates were what made earlier fine-tunes collapse to near-silence.
        - `adam_beta1` 0.8, `adam_beta2` 0.99: the VITS paper's AdamW settings.
        - `lr_scheduler_type` "cosine" with `warmup_ratio` 0.05.
        - `max_grad_norm` 1.0 (gradient clipping).
        - `precision` "auto": bf16 on a GPU that has it, else fp16 on a GPU, full fp32 on CPU.
        - `remove_unused_columns` False: the collator needs the feature columns the model's forward does not name.
        - `length_column_name` "waveform_length": `--group_by_length` groups by audio, not token, length.
        - `report_to` "tensorboard".
        - `dataloader_pin_memory` False when training on CPU (it only helps copies to an accelerator).
        - `logging_nan_inf_filter` False: a NaN or infinite loss shows in the logs (with a warning) instead of being
          replaced by the window's average, and the check no longer synchronizes with the device at every step.
        - `metric_for_best_model` "eval_mel", `greater_is_better` False: the held-out mel reconstruction is the loss
          that tracks what a listener hears; the adversarial terms oscillate by design. A listening metric
          (`recipe.training.listening_arguments`: `eval_cer`, `eval_similarity`, `eval_quality`, `listener`) sets
          `greater_is_better` its own way.
        - `precision` "auto" replaces `fp16` / `bf16`; setting `--fp16` or `--bf16` yourself is still honoured.
        - `disable_tqdm`: on unless stderr, where the bar is drawn, is a terminal: in a log file every redraw of a
          bar is noise, and the log lines say the progress there.
    """

    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate of the generator."})
    adam_beta1: float = field(default=0.8, metadata={"help": "AdamW beta1 (VITS)."})
    adam_beta2: float = field(default=0.99, metadata={"help": "AdamW beta2 (VITS)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of steps spent warming up."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the feature columns."})
    length_column_name: str = field(
        default="waveform_length",
        metadata={"help": "With --group_by_length: batches grouped by audio length, which sets the step's cost."},
    )
    report_to: None | str | list[str] = field(default="tensorboard", metadata={"help": "Where to log."})
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={
            "help": "Replace NaN / inf step losses by the window's average in the logs (hides them; one device sync "
            "per step). Off: they are logged as they are, with a warning."
        },
    )
    precision: str = field(
        default="auto",
        metadata={"help": "auto | fp32 | fp16 | bf16. auto: bf16 where the GPU has it, else fp16; fp32 on CPU."},
    )
    metric_for_best_model: str | None = field(
        default="eval_mel",
        metadata={
            "help": "Metric that picks the best checkpoint (load_best_model_at_end): a VITS loss (eval_mel), or a "
            "listening metric: cer, similarity, quality, listener."
        },
    )
    greater_is_better: bool | None = field(
        default=None,
        metadata={
            "help": "Whether a larger metric_for_best_model is better. Default: no for the VITS losses and eval_cer, "
            "yes for eval_similarity, eval_quality and listener."
        },
    )
    disable_tqdm: bool | None = field(
        default=None,
        metadata={"help": "No progress bars. Default: bars only when stderr is a terminal, log lines either way."},
    )

    # VITS objectives
    segment_size: int = field(
        default=32, metadata={"help": "Latent frames decoded per utterance and step (32 x hop 256 = 8192 samples)."}
    )
    mel_loss_weight: float = field(
        default=LossWeights.mel, metadata={"help": "Weight of the log-mel L1 reconstruction."}
    )
    kl_loss_weight: float = field(default=LossWeights.kl, metadata={"help": "Weight of the posterior / prior KL."})
    duration_loss_weight: float = field(
        default=LossWeights.duration, metadata={"help": "Weight of the duration loss."}
    )
    generator_loss_weight: float = field(
        default=LossWeights.generator, metadata={"help": "Weight of the LSGAN generator loss."}
    )
    feature_matching_loss_weight: float = field(
        default=LossWeights.feature_matching, metadata={"help": "Weight of feature matching."}
    )
    discriminator_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the discriminator; defaults to learning_rate."}
    )
    # The user's objectives against quiet models
    normalized_mel_loss: bool = field(
        default=LossWeights.normalized_mel,
        metadata={"help": "Divide the mel term per utterance by the target segment's mel energy (+eps)."},
    )
    amplitude_loss_weight: float = field(
        default=LossWeights.amplitude,
        metadata={"help": "Weight of the L1 between generated and target segment RMS and peak; 0: off."},
    )
    amplitude_target_peak: float | None = field(
        default=LossWeights.amplitude_target_peak,
        metadata={"help": "Pull the generated peak to this fixed value (e.g. 0.85) instead of the target's."},
    )
    l2sp_weight: float = field(
        default=LossWeights.l2sp,
        metadata={"help": "Strength of the pull of trainable weights towards their starting values."},
    )

    # Amplitude monitor
    amplitude_warning_ratio: float = field(
        default=DEFAULT_WARNING_RATIO,
        metadata={"help": "WARNING when the synthesized RMS is off the reference by more than this."},
    )
    amplitude_critical_ratio: float = field(
        default=DEFAULT_CRITICAL_RATIO,
        metadata={"help": "CRITICAL when the synthesized RMS is off the reference by more than this."},
    )
    amplitude_patience: int = field(
        default=DEFAULT_PATIENCE,
        metadata={"help": "Stop after this many CRITICAL evaluations in a row; 0 never stops."},
    )
    amplitude_monitor_texts: list[str] | None = field(
        default=None, metadata={"help": "Sentences synthesized at each evaluation; defaults to eval-split texts."}
    )

    # Time budget
    target_hours: float | None = field(
        default=None, metadata={"help": "Fit the run into this many hours: sets max_steps, stops and saves in time."}
    )
    target_hours_timing_steps: int = field(
        default=10,
        metadata={
            "help": "With --target_hours: optimizer steps timed before max_steps is set (the first is not counted)."
        },
    )

    def __post_init__(self):
        # precision and devices are settled before `TrainingArguments.__post_init__`, which reads fp16 / bf16 and
        # use_cpu; the recipe's own arguments are checked after it
        self._reject_torch_compile()
        self.precision = requested_precision(self.precision, self.fp16, self.bf16)
        self._use_cpu_for_processes_without_gpu()
        self._pin_memory_only_for_an_accelerator()
        self.precision = resolved_precision(self.precision, self.use_cpu)
        self.bf16, self.fp16 = self.precision == "bf16", self.precision == "fp16"
        if self.bf16 and not torch.cuda.is_available():
            # bf16 on a CPU: TrainingArguments refuses bf16 without a GPU unless use_cpu says it is meant
            self.use_cpu = True
        if self.disable_tqdm is None:
            self.disable_tqdm = not sys.stderr.isatty()
        self.resolve_direction()
        super().__post_init__()
        self._check_segment_size()
        self.check_adaptation_arguments()
        self.check_speaker_sampling()
        self._check_time_budget()
        self._check_amplitude_arguments()
        self.check_listening_arguments()
        self._check_periods_under_time_budget()

    def _reject_torch_compile(self) -> None:
        if self.torch_compile or self.torch_compile_backend or self.torch_compile_mode:
            # Trainer would compile the whole training forward, whose text and spectrogram lengths change with every
            # batch: it recompiled at each step (39-185 s a step against 0.35 s on the demo, CPU). Compiling only the
            # fixed-size decoder and discriminator did not pay on CPU either (benchmarks/README.md).
            raise ValueError(
                "--torch_compile is not supported: compiling the VITS training forward recompiles for every new "
                "batch shape (measured 39-185 s a step against 0.35 s on the demo). "
                "`python benchmarks/train_throughput.py --compile segment` measures compiling the decoder and "
                "discriminator alone."
            )

    def _use_cpu_for_processes_without_gpu(self) -> None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
            # several processes and no GPU (`accelerate launch --multi_gpu` on CPU): without use_cpu, Trainer sets up
            # no distributed state and each process would train alone; with it, DDP runs over gloo
            self.use_cpu = True

    def _pin_memory_only_for_an_accelerator(self) -> None:
        if self.use_cpu or not torch.accelerator.is_available():
            # pinned host memory only speeds up copies to an accelerator; without one, torch warns at every DataLoader
            self.dataloader_pin_memory = False

    def _check_segment_size(self) -> None:
        if self.segment_size < 1:
            raise ValueError(f"--segment_size must be positive, not {self.segment_size}")

    def _check_time_budget(self) -> None:
        if self.target_hours is not None and self.target_hours <= 0:
            raise ValueError(f"--target_hours must be positive, not {self.target_hours}")
        if self.target_hours_timing_steps < 2:
            # the first timed step pays for allocations and warm-up and is not counted: one more is needed
            raise ValueError(f"--target_hours_timing_steps must be at least 2, not {self.target_hours_timing_steps}")

    def _check_amplitude_arguments(self) -> None:
        """The monitor's thresholds are ordered, and the amplitude loss's target peak comes with the loss."""
        # checked here too (the monitor checks them when it is built) so that a bad value fails at parsing, naming
        # the flags, rather than after the data is prepared
        if not 0 <= self.amplitude_warning_ratio <= self.amplitude_critical_ratio:
            raise ValueError(
                "Need 0 <= --amplitude_warning_ratio <= --amplitude_critical_ratio, got "
                f"{self.amplitude_warning_ratio} and {self.amplitude_critical_ratio}"
            )
        if self.amplitude_target_peak is not None and not self.amplitude_loss_weight > 0:
            raise ValueError(
                f"--amplitude_target_peak {self.amplitude_target_peak} is a target of the amplitude loss, which is off "
                f"(--amplitude_loss_weight {self.amplitude_loss_weight}): give --amplitude_loss_weight > 0 too"
            )

    def _check_periods_under_time_budget(self) -> None:
        if self.target_hours is None:
            return
        # max_steps is planned during training: a fraction of it is unknown when these periods are fixed (a
        # fraction of the provisional upper bound, or of --max_steps rather than of the planned steps)
        fractional = {
            name: getattr(self, name)
            for name in ("logging_steps", "eval_steps", "save_steps")
            if getattr(self, name) is not None and 0 < getattr(self, name) < 1
        }
        if fractional:
            listed = ", ".join(f"--{name} {value}" for name, value in fractional.items())
            raise ValueError(
                f"--target_hours plans max_steps while training, so {listed} (a fraction of max_steps) cannot "
                "be resolved: give a whole number of steps"
            )

    @cached_property
    def _setup_devices(self) -> torch.device:
        """`TrainingArguments._setup_devices`, then `--ddp_timeout` given to a CPU (gloo) process group too.

        Overridden because transformers passes `ddp_timeout` to the process group it creates on GPUs but not with
        `use_cpu`: gloo then waited its default 30 minutes for a process that hangs (measured: a stopped rank left
        the other waiting past a --ddp_timeout of 20 s).
        """
        device = TrainingArguments._setup_devices.func(self)
        if self.use_cpu and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.distributed_c10d._set_pg_timeout(self.ddp_timeout_delta)
        return device
