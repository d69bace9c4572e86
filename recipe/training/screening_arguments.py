"""The audio screening flags of `run_finetune.py` (the base of `DataArguments`): what makes a decoded clip unfit to
train on, and the trimming of its silence.

The checks themselves are `recipe.data.audio_screening` (files and levels), `recipe.data.speech_activity` (trimming,
SNR, bandwidth), `recipe.data.quality` (DNSMOS, off unless --min_quality is given), `recipe.data.report` (speaking
rates) and `recipe.data.transcript_screening` (an ASR transcript, off unless --screen_asr_model is given); the
defaults come from `benchmarks/screening.py`, whose figures are in the README's results.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ScreeningArguments:
    truncation_tolerance: float = field(
        default=0.05,
        metadata={
            "help": "Drop a clip as 'truncated' (a broken file) when it decodes to less than (1 - this) of the length "
            "its header declares, as a cut download does. 1 turns the check off."
        },
    )
    silence_threshold_db: float = field(
        default=-50.0,
        metadata={
            "help": "Drop a clip as 'silent' when no 50 ms frame of it is louder than this RMS level, in dBFS "
            "(the bundled demo clips' loudest frames: -16.5 to -10.4 dBFS)."
        },
    )
    max_clipped_fraction: float = field(
        default=0.01,
        metadata={
            "help": "Drop a clip as 'clipped' when more than this share of its samples is at full scale. 1 turns "
            "the check off; the data report lists the most clipped clips either way."
        },
    )
    trim_silence: bool = field(
        default=True,
        metadata={
            "help": "Cut the non-speech before the first and after the last speech of each clip (an energy "
            "detector; 0.1 s kept on each side), so that the voice does not learn to start and end its sentences "
            "with room tone. --trim_silence false keeps the clips as they are."
        },
    )
    min_snr_db: float = field(
        default=20.0,
        metadata={
            "help": "Drop a clip as 'low_snr' when its speech is less than this many dB above its pauses and room "
            "tone (the data report lists each clip's figure). Speech frames are the loud ones, so the figure reads "
            "higher than the SNR at which noise was mixed in: noise mixed at 0-10 dB measures 11-17 dB, clean "
            "clips 31-79 dB (benchmarks/screening.py, the demo). 0 turns the check off."
        },
    )
    min_bandwidth_hz: float = field(
        default=5000.0,
        metadata={
            "help": "Drop a clip as 'narrow_band' when its speech spectrum stops below this frequency, as telephone "
            "audio resampled upwards does (at 4 kHz). 0 turns the check off."
        },
    )
    min_quality: float = field(
        default=0.0,
        metadata={
            "help": "Drop a clip as 'low_quality' when its DNSMOS overall score (a network's prediction of the mean "
            "opinion score, 1-5, from the audio alone; the data report lists each clip's) is below this. Costs a "
            'network run per clip and needs the quality extra (pip install -e ".[quality]"). 0 (the default) '
            "turns it off: no model is loaded. DNSMOS was trained on natural speech: synthetic voices score low "
            "(docs/data.md)."
        },
    )
    max_rate_deviation: float = field(
        default=0.35,
        metadata={
            "help": "Drop a clip as 'rate_outlier' when its speaking rate (characters per second of speech) is "
            "more than this share faster or slower than its speaker's median (x1.35 or /1.35): a transcript that "
            "does not match the reading. Speakers with fewer than 5 clips are not checked. 0 turns the check off."
        },
    )

    screen_asr_model: str | None = field(
        default=None,
        metadata={
            "help": "Drop a clip as 'transcript_mismatch' when this speech recognizer's transcript of it (after "
            "trimming) is more than --max_transcript_cer away from its text (character error rate): a reader who "
            "read another sentence or stopped half way. What `python -m recipe.compare --asr_model` takes: a "
            "transformers ASR model (a local folder or a Hub id) or a CTranslate2 Whisper folder. Run on the clips "
            "every other check keeps, once per cache build, in the main process (on the GPU when there is one). "
            "None (the default) turns it off: no model is loaded."
        },
    )
    max_transcript_cer: float = field(
        default=0.3,
        metadata={
            "help": "With --screen_asr_model: the highest character error rate of a clip's transcript against its "
            "text that keeps the clip, above 0 and at most 1 (both normalized as recipe.compare scores them: "
            "lowercase, no punctuation). Whisper tiny.en on benchmarks/screening.py's folder: clean clips 0-0.10, "
            "a reading stopped half way 0.47, another sentence 0.69-2.28."
        },
    )

    def check_screening(self) -> None:
        """Raises `ValueError` for a screening flag out of its range (called by `DataArguments.__post_init__`)."""
        for name in ("truncation_tolerance", "max_clipped_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name} must be between 0 and 1, not {getattr(self, name)}")
        if not self.silence_threshold_db <= 0:
            raise ValueError(
                f"--silence_threshold_db is a level in dBFS, at most 0 (full scale), not {self.silence_threshold_db}"
            )
        for name in ("min_snr_db", "min_bandwidth_hz", "min_quality", "max_rate_deviation"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"--{name} must be at least 0 (0 turns the check off), not {getattr(self, name)}")
        if not self.min_quality <= 5:
            raise ValueError(
                f"--min_quality is a DNSMOS score, 1 to 5 (0 turns the check off), not {self.min_quality}"
            )
        if not 0 < self.max_transcript_cer <= 1:
            raise ValueError(
                f"--max_transcript_cer is a character error rate above 0 and at most 1, not {self.max_transcript_cer}"
            )
        if self.min_quality > 0:
            from recipe.data.quality import missing_message, quality_available

            if not quality_available():
                raise ValueError(missing_message())
