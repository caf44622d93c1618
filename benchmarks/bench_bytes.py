"""Bytes of the int8 file against accuracy: the converter's choices, judged with paired intervals
on a finished cross-validation run (no training).

    python benchmarks/bench_bytes.py RUN_DIR/metrics_log.csv [--data-dir DIR] [--json OUT.json]

Every fold model of the run is converted again with each choice (int8 weights per tensor
instead of per output channel; tensor names stripped; both), scored on the very images its
kept predictions cover (its out-of-fold images and TEST), and compared with the run's own int8
file on the same images, resampled by source smear (cvstats). Printed per grid point and over
all points: the bytes saved and the paired accuracy change with its 90% interval ("not shown"
where the interval includes zero).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bcpareto import cvstats  # noqa: E402
from bcpareto.config import TrainConfig  # noqa: E402
from bcpareto.cvreport import study_folder  # noqa: E402
from bcpareto.dataset import default_data_dir  # noqa: E402
from bcpareto.runs import load_predictions  # noqa: E402

from _machine import cpu_name  # noqa: E402

CHOICES = {  # name -> convert_all keyword arguments
    "per-tensor": {"per_tensor": True},
    "names stripped": {"strip_names": True},
    "per-tensor + names stripped": {"per_tensor": True, "strip_names": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--grid-ids", type=lambda v: {int(x) for x in v.split(",")}, default=None,
                        help="only these grid points (e.g. the small ones: 0,1,8,9), every fold model of each")
    args = parser.parse_args()

    import keras

    from bcpareto.data import load_data_for
    from bcpareto.edge import convert_all, evaluate_tflite

    folder, study = study_folder(args.csv)
    tables, predictions = load_predictions(folder)
    if args.grid_ids is not None:
        predictions = {k: v for k, v in predictions.items() if k[0] in args.grid_ids}
    (table_name, table), = tables.items()
    index = {p: i for i, p in enumerate(table["path"])}
    records = {key: json.loads((folder / (f"grid_{key[0]}" + (f"_r{key[1]}" if key[1] else "") + ".json")).read_text())
               for key in predictions}
    config = TrainConfig(**{**next(iter(records.values()))["config"], "augment": ()})
    data = load_data_for(args.data_dir or default_data_dir(), dataclasses.replace(config, teacher=None))
    short = ["/".join(Path(p).parts[-3:]) for p in data.train.paths]
    if [index[p] for p in short] != list(range(len(short))):
        sys.exit("the data set's TRAIN images are not the run's (another data set or seed)")

    variants = {name: {} for name in CHOICES}
    sizes = {name: {} for name in ("run", *CHOICES)}
    for (gid, repeat), kept in sorted(predictions.items()):
        fold = data.for_fold(int(table["fold"][kept["val_index"][0]]))
        model = keras.models.load_model(folder / (f"grid_{gid}" + (f"_r{repeat}" if repeat else "") + ".keras"),
                                        compile=False)
        int8_file = folder / (f"grid_{gid}" + (f"_r{repeat}" if repeat else "") + "_int8.tflite")
        sizes["run"].setdefault(gid, []).append(int8_file.stat().st_size)
        for name, options in CHOICES.items():
            flatbuffer = convert_all(model, precisions=("int8",), representative_images=fold.train.images,
                                     **options)["int8"]
            sizes[name].setdefault(gid, []).append(len(flatbuffer))
            scored = {"table": kept["table"], "val_index": kept["val_index"], "test_index": kept["test_index"]}
            for split, images in (("val", fold.val.images), ("test", data.test.images)):
                scored[f"{split}_prob"] = evaluate_tflite(flatbuffer, images=images,
                                                          labels=table["label"][kept[f"{split}_index"]])["probabilities"]
            variants[name][gid, repeat] = scored
        keras.backend.clear_session()
        print(f"grid {gid} repeat {repeat}: " + ", ".join(f"{n} {sizes[n][gid][-1]:,} B" for n in sizes), flush=True)

    base = cvstats.collect(table, {k: {**v, "val_prob": v["val_prob_int8"], "test_prob": v["test_prob_int8"]}
                                   for k, v in predictions.items()})
    train, test = ~base.is_test, base.is_test
    boot = {"cv": cvstats.GroupBootstrap(base.groups[train], base.labels[train], seed=0),
            "test": cvstats.GroupBootstrap(base.groups[test], base.labels[test], seed=0)}
    result = {"machine": cpu_name(), "csv": str(args.csv), "study": study, "choices": {}}
    for name in CHOICES:
        other = cvstats.collect(table, variants[name])
        rows = []
        for m, gid in enumerate(base.grid_ids):
            row = {"grid_id": int(gid), "bytes_run": float(np.mean(sizes["run"][gid])),
                   "bytes": float(np.mean(sizes[name][gid]))}
            for score, part in (("cv", train), ("test", test)):
                d = boot[score].difference(other.correct[score][m][part], base.correct[score][m][part])
                row[f"{score}_diff"], row[f"{score}_lo"], row[f"{score}_hi"] = d.estimate.value, d.estimate.lo, d.estimate.hi
            rows.append(row)
        pooled = {}
        for score, part in (("cv", train), ("test", test)):  # every point at once: mean change
            d = boot[score].difference(np.nanmean(other.correct[score][:, part], axis=0),
                                       np.nanmean(base.correct[score][:, part], axis=0))
            pooled[score] = vars(d.estimate)
        frame = pd.DataFrame(rows)
        result["choices"][name] = {"per_point": rows, "pooled": pooled,
                                   "bytes_saved_median": float((frame["bytes_run"] - frame["bytes"]).median()),
                                   "bytes_saved_share_median": float(((frame["bytes_run"] - frame["bytes"]) / frame["bytes_run"]).median())}
        print(f"\n{name}: median {result['choices'][name]['bytes_saved_median']:,.0f} bytes saved "
              f"({result['choices'][name]['bytes_saved_share_median']:.1%}); mean accuracy change over "
              f"all points, out-of-fold {pooled['cv']['value']:+.4f} [{pooled['cv']['lo']:+.4f}, {pooled['cv']['hi']:+.4f}], "
              f"TEST {pooled['test']['value']:+.4f} [{pooled['test']['lo']:+.4f}, {pooled['test']['hi']:+.4f}]")
        print(frame.round(4).to_string(index=False))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
