"""What the amplitude monitor remembers of a run, and its file in each checkpoint (`amplitude_status.json`).

The history holds one entry per evaluated step, the current streak of CRITICAL evaluations and the checkpoints
saved while the voice was healthy. It is written into every checkpoint and read back on resume, so that a resumed
run keeps counting the streak and can still name the last healthy checkpoint.
"""

from __future__ import annotations

import json
import os

AMPLITUDE_STATUS_FILE = "amplitude_status.json"
# statuses a checkpoint may be saved with and still be named as a point to go back to
HEALTHY_STATUSES = ("OK", "WARNING")


class AmplitudeHistory:
    """The amplitude monitor's record of a run.

    Args:
        critical_streak (`int`, *optional*, defaults to 0): CRITICAL evaluations in a row, up to the last one.
        last_result (`dict`, *optional*): the last evaluation's entry, with its per-sentence figures.
        entries (`list[dict]`, *optional*): one entry per evaluated step (`step`, `status`, `rms`, `peak`, `ratio`,
            `reference_rms`), oldest first.
        healthy_checkpoints (`list[dict]`, *optional*): the checkpoints saved after an OK / WARNING evaluation
            (`checkpoint`, `step`, `status`), oldest first.
    """

    def __init__(
        self,
        critical_streak: int = 0,
        last_result: dict | None = None,
        entries: list[dict] | None = None,
        healthy_checkpoints: list[dict] | None = None,
    ):
        self.critical_streak = critical_streak
        self.last_result = last_result
        self.entries = list(entries or [])
        self.healthy_checkpoints = list(healthy_checkpoints or [])

    def add_evaluation(self, entry: dict) -> bool:
        """Record an evaluation's `entry`; each step counts once towards the CRITICAL streak.

        Args:
            entry (`dict`): `step`, `status`, `rms`, `peak`, `ratio`, `reference_rms` and `sentences`.

        Returns:
            `bool`: whether the step was already counted (the final evaluation of the last step's weights): the
            entry is then the last result, but neither the entries nor the streak change.
        """
        already_counted = bool(self.entries) and self.entries[-1]["step"] == entry["step"]
        self.last_result = entry
        if not already_counted:
            self.entries.append({k: v for k, v in entry.items() if k != "sentences"})
            self.critical_streak = self.critical_streak + 1 if entry["status"] == "CRITICAL" else 0
        return already_counted

    def add_checkpoint(self, checkpoint: str, step: int) -> None:
        """Remember `checkpoint` as healthy when the last evaluation before it was OK or WARNING."""
        status = self.last_result["status"] if self.last_result else None
        if status in HEALTHY_STATUSES:
            self.healthy_checkpoints.append({"checkpoint": checkpoint, "step": step, "status": status})

    def last_healthy_checkpoint(self) -> dict | None:
        """The newest checkpoint saved with an OK / WARNING status that is still on disk (or None)."""
        for record in reversed(self.healthy_checkpoints):
            if os.path.isdir(record["checkpoint"]):
                return record
        return None

    def critical_entries(self) -> list[dict]:
        """The entries of the current CRITICAL streak."""
        return self.entries[-self.critical_streak :] if self.critical_streak else []

    def save(self, folder: str, settings: dict) -> None:
        """Write `amplitude_status.json` into `folder`.

        Args:
            folder (`str`): the checkpoint folder.
            settings (`dict`): the monitor's settings written beside the history (`reference_rms`, `warning_ratio`,
                `critical_ratio`, `patience`), so that the file says what its statuses were measured against.
        """
        payload = {
            # None: no evaluation ran before this checkpoint, so its health is unknown
            "status": self.last_result["status"] if self.last_result else None,
            "evaluated_at_step": self.last_result["step"] if self.last_result else None,
            **settings,
            "critical_streak": self.critical_streak,
            "last_evaluation": self.last_result,
            "history": self.entries,
            "healthy_checkpoints": self.healthy_checkpoints,
        }
        with open(os.path.join(folder, AMPLITUDE_STATUS_FILE), "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, ensure_ascii=False)

    @classmethod
    def load(cls, folder: str) -> AmplitudeHistory:
        """The history `save` wrote into `folder` (its `critical_streak` is required; the rest may be missing)."""
        with open(os.path.join(folder, AMPLITUDE_STATUS_FILE), encoding="utf-8") as f:
            saved = json.load(f)
        return cls(
            critical_streak=int(saved["critical_streak"]),
            last_result=saved.get("last_evaluation"),
            entries=saved.get("history", []),
            healthy_checkpoints=saved.get("healthy_checkpoints", []),
        )
