"""``passt-study predict``: tag audio files with a trained model.

    passt-study predict runs/s/checkpoint.pt clip.wav long.flac [--top-k 5] [--hop 2.5]
    passt-study predict weights.pt clip.wav --reference passt_s_swa_p16_128_ap476 \\
        --class-csv class_labels_indices.csv --format json

Any file libsndfile reads, at any sample rate (resampled) and channel count (downmixed),
of any length: audio longer than the model's window is cut into overlapping windows (hop:
``--hop`` seconds, default a quarter of the window; the last window ends at the audio's end,
and no window is padded: a 10 s clip of a 10 s model is one window), run as batches. Long
files are read, resampled and tagged in blocks, so memory does not grow with their length. For each file it prints
the top-k tags of the clip (mean and max over windows) and of every window, with start and
end seconds: probabilities are sigmoid scores for multi-label models, softmax for
single-label ones. CSV (default) or JSON on stdout; notes (downmixing, resampling) and errors
on stderr. A file that cannot be read is reported in one line and the others are still
tagged; the exit status is then 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence

from passt_lib.errors import USER_ERRORS, one_line


def parse_args(argv: Sequence[str] | None):
    p = argparse.ArgumentParser(prog="passt-study predict", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("checkpoint", help="checkpoint.pt of passt-study train, a folder of passt-study "
                                      "export, or reference weights with --reference")
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("--top-k", type=int, default=5, help="tags per clip and window (default 5)")
    p.add_argument("--hop", type=float, default=None,
                   help="seconds between windows (default: a quarter of the model's window)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--reference", metavar="ARCH", default=None,
                   help="the checkpoint holds the authors' weights of this released "
                        "architecture (passt_lib.released), e.g. passt_s_swa_p16_128_ap476")
    p.add_argument("--class-csv", default=None,
                   help="class names for --reference (AudioSet's class_labels_indices.csv)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    args = p.parse_args(argv)
    if args.top_k < 1:
        p.error(f"--top-k must be >= 1, got {args.top_k}")
    return args


def load(args):
    from passt_lib.inference import AudioTagger, load_model  # torch: not for --help

    if args.reference:
        return AudioTagger.from_reference(args.checkpoint, args.reference, args.class_csv)
    if args.class_csv:
        raise ValueError("--class-csv names the classes of --reference weights; a checkpoint "
                         "of passt-study train carries its own class names")
    return load_model(args.checkpoint)


def top(tagger, scores, k: int) -> list[dict]:
    """The ``k`` best classes of a (C,) score vector, best first."""
    values, idx = scores.topk(min(k, len(scores)))
    return [{"rank": r + 1, "tag": tagger.classes[i], "probability": round(float(v), 4),
             **({"mid": tagger.mids[i]} if tagger.mids else {})}
            for r, (v, i) in enumerate(zip(values.tolist(), idx.tolist()))]


def tag_file(tagger, path: str, args) -> dict:
    from passt_lib.audio import AudioFile  # torch: not for --help

    with AudioFile(path, tagger.sample_rate) as audio:
        p = tagger.predict(audio, hop_seconds=args.hop, batch_size=args.batch_size)
        seconds, notes = audio.seconds, audio.notes
    windows = [{"start_s": round(float(s), 3), "end_s": round(float(e), 3),
                "top": top(tagger, p.window_scores[0, w], args.top_k)}
               for w, (s, e) in enumerate(zip(p.start_seconds, p.end_seconds))]
    return {"file": path, "seconds": round(seconds, 3), "notes": notes,
            "clip_mean": top(tagger, p.clip_mean[0], args.top_k),
            "clip_max": top(tagger, p.clip_max[0], args.top_k), "windows": windows}


def csv_rows(result: dict):
    end = result["seconds"]
    for scope in ("clip_mean", "clip_max"):
        for t in result[scope]:
            yield {"file": result["file"], "scope": scope, "start_s": 0.0, "end_s": end, **t}
    for w in result["windows"]:
        for t in w["top"]:
            yield {"file": result["file"], "scope": "window", "start_s": w["start_s"],
                   "end_s": w["end_s"], **t}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tagger = load(args)
    print(f"{tagger.name}: {len(tagger.classes)} classes, {tagger.task}, "
          f"{tagger.window_seconds:g} s windows at {tagger.sample_rate} Hz", file=sys.stderr)
    results, failed = [], 0
    fields = ["file", "scope", "start_s", "end_s", "rank", "tag", "mid", "probability"]
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore")
    if args.format == "csv":
        writer.writeheader()
    for path in args.audio:
        try:
            result = tag_file(tagger, path, args)
        except USER_ERRORS as exc:
            print(f"passt-study predict: error: {path}: {one_line(exc)}", file=sys.stderr)
            failed += 1
            continue
        for note in result["notes"]:
            print(f"{path}: {note}", file=sys.stderr)
        if args.format == "csv":
            writer.writerows(csv_rows(result))
        results.append(result)
    if args.format == "json":
        json.dump(results, sys.stdout, indent=1)
        print()
    return 2 if failed else 0


if __name__ == "__main__":
    from passt_lib.errors import run_main

    sys.exit(run_main("passt-study predict", main))
