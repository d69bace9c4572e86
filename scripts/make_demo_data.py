"""Generates the bundled Kurmanji demo data: espeak-ng speech in the LJSpeech and Common Voice layouts, plus a
character `VitsTokenizer` for it.

    python scripts/make_demo_data.py            # rewrites demo/kmr_ljspeech, demo/kmr_common_voice, demo/tiny_model

Needs espeak-ng (with its `ku` voice), sox and lame on the PATH. The output is committed: tests and the demo read it
and never run this script. Re-running it produces the same files (espeak-ng and lame are deterministic).

- `demo/kmr_ljspeech/`: `metadata.csv` (`id|text|normalized_text`, no header, as LJSpeech ships it) and
  `wavs/<id>.wav` (16 kHz mono 16-bit PCM).
- `demo/kmr_common_voice/`: `train.tsv`, `dev.tsv`, `test.tsv`, `validated.tsv` with Common Voice's columns and
  `clips/*.mp3` (48 kHz mono MP3), the layout of a Common Voice language folder as downloaded.
- `demo/tiny_model/`: `vocab.json` and `tokenizer_config.json` of a character `VitsTokenizer` that covers every
  letter of the demo sentences (`<pad>` is id 0, the blank that `add_blank` inserts, as in MMS vocabularies).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

# (text as written, text with numbers spelled out): the LJSpeech `text` and `normalized_text` columns. Common Voice
# sentences never contain digits, so the Common Voice layout uses the spelled-out form.
SENTENCES = [
    ("Roj baş, tu çawa yî?", None),
    ("Ez baş im, spas.", None),
    ("Navê min Azad e.", None),
    ("Ez ji Amedê têm.", None),
    ("Îro hewa pir xweş e.", None),
    ("Zarok li baxçe dilîzin.", None),
    ("Dayika min nan çêdike.", None),
    ("Bavê min li bazarê ye.", None),
    ("Em ê sibê biçin gund.", None),
    ("Ava çiyê sar û zelal e.", None),
    ("Pisîk li ser kursiyê radize.", None),
    ("Ez pirtûkekê dixwînim.", None),
    ("Şev baş, xewa xweş.", None),
    ("Çiya bilind û kesk in.", None),
    ("Xwişka min mamoste ye.", None),
    ("Ew qehweyê vedixwe.", None),
    ("Dengê te xweş e.", None),
    ("Min çay û şîr xwest.", None),
    ("Baran dibare û hewa sar e.", None),
    ("Em bi hev re dixebitin.", None),
    ("Hespê spî bi lez direve.", None),
    ("Gulên sor li baxçê me ne.", None),
    ("Ez ji te hez dikim.", None),
    ("Qelem li ser maseyê ye.", None),
    ("Heval, were vir!", None),
    ("Ji kerema xwe derî veke.", None),
    ("Ez 3 sêvan dixwim.", "Ez sê sêvan dixwim."),
    ("Dibistan saet 8 dest pê dike.", "Dibistan saet heşt dest pê dike."),
    ("Stêrk di şevê de dibiriqin.", None),
    ("Rûbar ber bi deryayê ve diherike.", None),
    ("Kûçik li ber derî ye.", None),
    ("Xwarin amade ye, werin!", None),
]

# espeak-ng voice variants stand in for speakers; (variant, words per minute, pitch). Uneven shares of the clips, so
# that `--speaker_id top` has one clear answer (ku+m1).
VOICES = [("ku+m1", 160, 45), ("ku+f2", 150, 60), ("ku+m3", 170, 35), ("ku+f4", 155, 70)]
VOICE_OF_CLIP = [0, 1, 0, 2, 0, 1, 3, 0, 2, 1, 0, 3, 0, 1, 2, 0, 1, 0, 3, 2, 0, 1, 0, 2, 1, 0, 3, 0, 2, 1, 0, 1]
# Common Voice's dev and test sets are small, disjoint subsets of validated.tsv; train.tsv holds the rest.
DEV_CLIPS = {4, 9, 14, 26}
TEST_CLIPS = {19, 29, 31}

LJSPEECH_SAMPLING_RATE = 16000
COMMON_VOICE_SAMPLING_RATE = 48000
# Columns of a Common Voice (>= 17.0) TSV, in order.
COMMON_VOICE_COLUMNS = [
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
]
GENDER = {"m": "male_masculine", "f": "female_feminine"}


def run(command: list[str], **kwargs) -> None:
    subprocess.run(command, check=True, **kwargs)


def speak(text: str, voice: tuple[str, int, int], wav_path: Path) -> None:
    """espeak-ng at its native 22.05 kHz, then sox to 16 kHz mono 16-bit with leading / trailing silence trimmed."""
    name, speed, pitch = voice
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        run(["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text])
        # silence 1 0.05 1%: drop leading silence; reverse twice to drop the trailing one; keep 0.1 s of pad.
        run(
            ["sox", str(raw), "-r", str(LJSPEECH_SAMPLING_RATE), "-c", "1", "-b", "16", str(wav_path)]
            + ["silence", "1", "0.05", "1%", "reverse", "silence", "1", "0.05", "1%", "reverse", "pad", "0.1", "0.1"]
        )


def to_mp3(wav_path: Path, mp3_path: Path) -> None:
    """48 kHz mono MP3, like Common Voice clips. `--resample 48` stops lame from lowering the rate at 32 kbps."""
    upsampled = subprocess.run(
        ["sox", str(wav_path), "-r", str(COMMON_VOICE_SAMPLING_RATE), "-t", "wav", "-"],
        check=True,
        capture_output=True,
    ).stdout
    run(["lame", "--quiet", "-b", "32", "--resample", "48", "-m", "m", "-", str(mp3_path)], input=upsampled)


def write_ljspeech(folder: Path) -> list[str]:
    wavs = folder / "wavs"
    wavs.mkdir(parents=True)
    ids = []
    with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as metadata:
        for index, (text, normalized) in enumerate(SENTENCES):
            clip_id = f"KMR-{index + 1:04d}"
            speak(normalized or text, VOICES[VOICE_OF_CLIP[index]], wavs / f"{clip_id}.wav")
            metadata.write(f"{clip_id}|{text}|{normalized or text}\n")
            ids.append(clip_id)
    return ids


def write_common_voice(folder: Path, ljspeech_wavs: Path, ids: list[str]) -> None:
    clips = folder / "clips"
    clips.mkdir(parents=True)
    rows = []
    for index, clip_id in enumerate(ids):
        voice = VOICES[VOICE_OF_CLIP[index]]
        sentence = SENTENCES[index][1] or SENTENCES[index][0]
        # Common Voice names clips common_voice_<locale>_<number>.mp3 and hashes speakers into 128 hex digits.
        path = f"common_voice_kmr_{41000000 + index}.mp3"
        to_mp3(ljspeech_wavs / f"{clip_id}.wav", clips / path)
        rows.append(
            {
                "client_id": hashlib.sha512(voice[0].encode()).hexdigest(),
                "path": path,
                "sentence_id": hashlib.sha256(sentence.encode()).hexdigest(),
                "sentence": sentence,
                "sentence_domain": "",
                "up_votes": "2",
                "down_votes": "0",
                "age": "",
                "gender": GENDER[voice[0].split("+")[1][0]],
                "accents": "",
                "variant": "",
                "locale": "kmr",
                "segment": "",
            }
        )
    splits = {
        "validated": rows,
        "train": [row for i, row in enumerate(rows) if i not in DEV_CLIPS | TEST_CLIPS],
        "dev": [row for i, row in enumerate(rows) if i in DEV_CLIPS],
        "test": [row for i, row in enumerate(rows) if i in TEST_CLIPS],
    }
    for split, split_rows in splits.items():
        with open(folder / f"{split}.tsv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(
                handle, COMMON_VOICE_COLUMNS, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE
            )
            writer.writeheader()
            writer.writerows(split_rows)


def write_tokenizer(folder: Path) -> None:
    """A character vocabulary covering the demo sentences, saved through `VitsTokenizer` itself."""
    import json

    from transformers import VitsTokenizer

    letters = sorted(
        {char for text, normalized in SENTENCES for char in (normalized or text).lower() if char.isalpha()}
    )
    # The Kurmanji Latin alphabet, so that the demo vocabulary also covers sentences a user types in.
    letters = sorted(set(letters) | set("abcçdeêfghiîjklmnopqrsştuûvwxyz"))
    vocab = {"<pad>": 0, " ": 1, "'": 2, "-": 3}
    for letter in letters:
        vocab[letter] = len(vocab)
    vocab["<unk>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        tokenizer = VitsTokenizer(
            str(vocab_file), language="kmr", add_blank=True, normalize=True, phonemize=False, is_uroman=False
        )
        tokenizer.save_pretrained(str(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo_dir", default=str(Path(__file__).resolve().parent.parent / "demo"))
    args = parser.parse_args()
    for tool in ("espeak-ng", "sox", "lame"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on the PATH (apt-get install espeak-ng sox lame)")
    demo = Path(args.demo_dir)
    ljspeech, common_voice = demo / "kmr_ljspeech", demo / "kmr_common_voice"
    for folder in (ljspeech, common_voice):
        shutil.rmtree(folder, ignore_errors=True)
    ids = write_ljspeech(ljspeech)
    write_common_voice(common_voice, ljspeech / "wavs", ids)
    write_tokenizer(demo / "tiny_model")
    print(f"wrote {len(ids)} clips to {ljspeech} and {common_voice}, tokenizer to {demo / 'tiny_model'}")


if __name__ == "__main__":
    main()
