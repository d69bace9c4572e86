"""Pictures and the HTML page of `python -m recipe.compare`: what a user looks at and listens to.

`plot_sentence` draws one PNG per sentence (a column per model, waveform above, log-mel below, on shared axes so
that a quieter or slower model is visible at a glance); `write_html_report` renders `comparison.json` into
`report.html` with the references used and skipped, the summary, the verdicts, the per-sentence metrics, the
pictures and `<audio>` players.
"""

from __future__ import annotations

import html

import numpy as np
import torch

from recipe.audio import SpectrogramConfig, log_mel_spectrogram
from recipe.evaluation.speaker_plan import short_name

# Metrics shown in the per-sentence tables, in this order, with their display names.
SENTENCE_METRICS = {
    "duration_s": "duration (s)",
    "generation_seconds": "generation (s)",
    "real_time_factor": "real-time factor",
    "peak": "peak",
    "mean_abs": "mean |x|",
    "rms": "RMS",
    "rms_dbfs": "RMS (dBFS)",
    "silence_ratio": "silence ratio",
    "leading_silence_s": "leading silence (s)",
    "trailing_silence_s": "trailing silence (s)",
    "energy": "energy",
    "zero_crossing_rate": "zero-crossing rate",
    "mcd": "MCD (Kubichek, DTW)",
    "duration_ratio": "duration ratio",
    "cer": "CER",
    "wer": "WER",
    "similarity": "speaker similarity",
}
# The per-speaker table of a multi-speaker model: the figures a voice is judged by
SPEAKER_METRICS = {
    "rms": "RMS",
    "silence_ratio": "silence ratio",
    "mcd": "MCD",
    "cer": "CER",
    "similarity": "similarity",
}


def plot_sentence(path: str, title: str, clips: dict[str, tuple[np.ndarray, SpectrogramConfig]]) -> None:
    """Save a PNG with one column per clip: its waveform (top) and its log-mel spectrogram (bottom).

    Args:
        path (`str`): where to write the PNG.
        title (`str`): the sentence.
        clips (`dict[str, tuple[np.ndarray, SpectrogramConfig]]`): label (e.g. "original") -> waveform and the
            spectrogram geometry of its model (its sampling rate sets the time axis).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    durations = [len(wave) / config.sampling_rate for wave, config in clips.values()]
    longest = max(durations)
    figure, axes = plt.subplots(2, len(clips), figsize=(5 * len(clips), 5), squeeze=False)
    mels = {}
    for label, (wave, config) in clips.items():
        mels[label] = log_mel_spectrogram(torch.from_numpy(np.asarray(wave, dtype=np.float32)), config).numpy()
    low = min(float(mel.min()) for mel in mels.values())
    high = max(float(mel.max()) for mel in mels.values())
    for column, (label, (wave, config)) in enumerate(clips.items()):
        seconds = np.arange(len(wave)) / config.sampling_rate
        top, bottom = axes[0, column], axes[1, column]
        top.plot(seconds, wave, linewidth=0.5)
        top.set_xlim(0, longest)
        top.set_ylim(-1, 1)  # full scale: a model that went quiet looks quiet
        top.set_title(label)
        top.set_xlabel("seconds")
        mel = mels[label]
        bottom.imshow(
            mel,
            origin="lower",
            aspect="auto",
            extent=(0, mel.shape[1] * config.hop_length / config.sampling_rate, 0, mel.shape[0]),
            vmin=low,
            vmax=high,
        )
        bottom.set_xlim(0, longest)
        bottom.set_xlabel("seconds")
        bottom.set_ylabel("mel bin")
    figure.suptitle(title if len(title) <= 100 else title[:97] + "...")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _format(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _references_section(account: dict | None) -> list[str]:
    """The recordings compared against: how many of the chosen split were used, and each skipped clip's reason."""
    if account is None:
        return []
    parts = [
        "<h2>References</h2>",
        f"<p>{account['used']} of {account['clips']} clips used ({html.escape(account['description'])})"
        + (f"; {account['not_reached']} after the first --max_samples" if account["not_reached"] else "")
        + ".</p>",
    ]
    if account["skipped"]:
        parts.append("<table><tr><th>skipped clip</th><th>reason</th></tr>")
        parts += [
            f"<tr><td>{html.escape(entry['file'])}</td><td>{html.escape(entry['reason'])}</td></tr>"
            for entry in account["skipped"]
        ]
        parts.append("</table>")
    unnamed = sum(account["skipped_count"].values()) - len(account["skipped"])
    if unnamed > 0:
        parts.append(f"<p>and {unnamed} more skipped clips, counted in {html.escape(account['data_report'])}.</p>")
    return parts


def _speakers_section(summary: dict, models: list[str]) -> list[str]:
    """A multi-speaker model's figures per compared speaker: a row per speaker, a column per model and metric."""
    rows = summary.get("speakers")
    if not rows:
        return []
    shown = [
        (label, key)
        for key in SPEAKER_METRICS
        for label in models
        if any(key in row["means"].get(label, {}) for row in rows.values())
    ]
    parts = ["<h2>Per speaker (mean over its sentences)</h2><table><tr><th>speaker</th><th>sentences</th>"]
    parts += [f"<th>{html.escape(SPEAKER_METRICS[key])} ({html.escape(label)})</th>" for label, key in shown]
    parts.append("</tr>")
    for speaker, row in rows.items():
        parts.append(f"<tr><th>{html.escape(short_name(speaker))}</th><td>{row['num_sentences']}</td>")
        parts += [f"<td>{_format(row['means'].get(label, {}).get(key))}</td>" for label, key in shown]
        parts.append("</tr>")
    parts.append("</table>")
    return parts


def _similarity_section(similarity: dict | None) -> list[str]:
    """The speaker-similarity matrices: per model, a row per speaker read as, a column per speaker's recordings."""
    if not similarity:
        return []
    columns = list(similarity["recordings"])
    parts = [
        "<h2>Speaker similarity</h2>",
        f"<p>{html.escape(similarity['encoder'])}: {html.escape(similarity['figure'])}. Higher is closer; a "
        "speaker's synthesis should be closest to its own recordings (the diagonal).</p>",
    ]
    for label, rows in similarity["matrix"].items():
        parts.append(f"<table><tr><th>{html.escape(label)}: rows synthesized as, columns recordings of</th>")
        parts += [
            f"<th>{html.escape(short_name(column))} ({similarity['recordings'][column]})</th>" for column in columns
        ]
        parts.append("</tr>")
        for row, cells in rows.items():
            parts.append(f"<tr><th>{html.escape(short_name(row))}</th>")
            for column in columns:
                mark = " style='font-weight:bold'" if column == row else ""
                parts.append(f"<td{mark}>{_format(cells[column])}</td>")
            parts.append("</tr>")
        parts.append("</table>")
    return parts


def write_html_report(path: str, comparison: dict) -> None:
    """Render `comparison` (the content of `comparison.json`) as a self-contained page next to the WAVs and PNGs.

    Paths inside `comparison` are relative to the folder of `path`, so the page works when the folder is moved.
    """
    models = comparison["models"]
    summary = comparison["summary"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>VITS comparison</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
        ".PASS{color:#070}.FAIL{color:#b00;font-weight:bold}.SKIP{color:#777}img{max-width:100%}</style>",
        "</head><body><h1>Original vs fine-tuned</h1>",
        "<p>"
        + "<br>".join(
            f"{html.escape(label)}: <code>{html.escape(source)}</code>"
            for label, source in comparison["sources"].items()
        )
        + "</p>",
        *_references_section(comparison.get("references")),
        "<h2>Verdict</h2><ul>",
    ]
    for verdict in comparison["verdicts"]:
        parts.append(
            f"<li class='{verdict['status']}'>{verdict['status']} {html.escape(verdict['name'])}: "
            f"{html.escape(verdict['message'])}</li>"
        )
    parts.append("</ul><h2>Summary (mean over sentences)</h2><table><tr><th>metric</th>")
    columns = [label for label in ("reference", *models) if label in summary["means"]]
    parts += [f"<th>{html.escape(label)}</th>" for label in columns]
    if summary.get("deltas"):
        parts.append("<th>fine-tuned − original</th>")
    parts.append("</tr>")
    for key, name in SENTENCE_METRICS.items():
        if not any(key in summary["means"][label] for label in columns):
            continue
        parts.append(f"<tr><th>{html.escape(name)}</th>")
        parts += [f"<td>{_format(summary['means'][label].get(key))}</td>" for label in columns]
        if summary.get("deltas"):
            parts.append(f"<td>{_format(summary['deltas'].get(key))}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    parts += _speakers_section(summary, models)
    parts += _similarity_section(comparison.get("similarity"))
    parts.append("<h2>Sentences</h2>")
    for sentence in comparison["sentences"]:
        speaker = f" (as {html.escape(short_name(sentence['speaker']))})" if "speaker" in sentence else ""
        parts.append(f"<h3>{sentence['index']}. {html.escape(sentence['text'])}{speaker}</h3>")
        labels = [label for label in ("reference", *models) if label in sentence]
        parts.append("<table><tr><th></th>" + "".join(f"<th>{html.escape(label)}</th>" for label in labels) + "</tr>")
        parts.append("<tr><th>audio</th>")
        for label in labels:
            source = html.escape(sentence[label]["wav"])
            parts.append(f"<td><audio controls preload='none' src='{source}'></audio></td>")
        parts.append("</tr>")
        for key, name in SENTENCE_METRICS.items():
            if any(key in sentence[label] for label in labels):
                parts.append(f"<tr><th>{html.escape(name)}</th>")
                parts += [f"<td>{_format(sentence[label].get(key))}</td>" for label in labels]
                parts.append("</tr>")
        if any("transcription" in sentence[label] for label in labels):
            parts.append("<tr><th>transcription</th>")
            parts += [f"<td>{_format(sentence[label].get('transcription'))}</td>" for label in labels]
            parts.append("</tr>")
        parts.append("</table>")
        parts.append(f"<img src='{html.escape(sentence['plot'])}' alt='waveforms and mel spectrograms'>")
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(parts))
