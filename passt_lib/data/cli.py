"""``passt-study data ...``: build the embedded dataset, describe a data file.

    passt-study data build [--scale embedded] [--seed 0] [--task mixtures] [--root DIR] [--force]
    passt-study data info PATH
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import h5py
import numpy as np

from passt_lib.data import embedded


def _info(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        lines = [f"{p}:"]
        for name in ("params.json", "COMPLETE"):
            if (p / name).exists():
                lines.append(f"  {name}: {(p / name).read_text().strip()}")
        for h in sorted(p.glob("*.hdf")):
            lines.append(_info(str(h)))
        return "\n".join(lines)
    if not p.is_file():
        raise FileNotFoundError(f"{path!r} does not exist; build the embedded dataset with "
                                "`passt-study data build`")
    if not h5py.is_hdf5(p):
        raise ValueError(f"{path} is not an HDF5 file; `data info` describes the PaSST / PANNs "
                         f"HDF5 layouts and embedded dataset folders")
    with h5py.File(p, "r") as f:
        missing = [k for k in ("audio_name", "target") if k not in f]
        if missing:
            raise ValueError(f"{path} is HDF5 but not in the PaSST or PANNs layout: missing "
                             f"{missing} (found {sorted(f)})")
        lines = [f"{p}: {len(f['audio_name'])} clips, datasets {sorted(f)}"]
        t = f["target"][()]
        if "mp3" in f:
            sizes = [len(f["mp3"][i]) for i in range(min(len(t), 64))]
            lines.append(f"  layout: PaSST mp3 HDF5; mean mp3 bytes {np.mean(sizes):.0f}")
        elif "waveform" in f:
            lines.append(f"  layout: PANNs waveform HDF5 {f['waveform'].shape}, sample_rate "
                         f"{f.attrs.get('sample_rate')}")
        lines.append(f"  target {t.dtype} {t.shape}")
        if t.dtype == np.uint8 and "mp3" in f:
            hot = np.unpackbits(t, axis=1)
            lines.append(f"  labels per clip (packed, up to {hot.shape[1]} bits): "
                         f"mean {hot.sum(1).mean():.2f}")
        names = [n.decode() for n in f["audio_name"][:3]]
        lines.append(f"  first names: {names}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="passt-study data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or reuse) the embedded dataset")
    b.add_argument("--scale", default="embedded")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--task", default="mixtures", choices=("mixtures", "keywords"))
    b.add_argument("--root", default=None,
                   help="dataset folder (default: data/ of the checkout, where training looks)")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("--workers", type=int, default=None)
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a build parameter, e.g. --set n_train=200")
    i = sub.add_parser("info", help="describe an HDF5 file or an embedded dataset folder")
    i.add_argument("path")
    args = ap.parse_args(argv)
    if args.cmd == "info":
        print(_info(args.path))
        return 0
    overrides = {}
    for kv in args.set:
        if "=" not in kv:
            raise ValueError(f"--set expects KEY=VALUE; got {kv!r}")
        k, v = kv.split("=", 1)
        overrides[k] = json.loads(v)
    t0 = time.perf_counter()
    config = embedded.ensure(args.scale, seed=args.seed, task=args.task, root=args.root,
                             force=args.force, workers=args.workers, **overrides)
    print(f"{config.name}: train {config.train_path}, eval {config.eval_path}, "
          f"{config.n_classes} classes ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
