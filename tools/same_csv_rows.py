"""Compare the metrics_log.csv files that tools/same_csv_rows.sh left in two folders: the same
header and the same rows, every column but timings (seconds, latency) and trial numbers."""

import csv
import sys
from pathlib import Path


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def main(before: str, after: str) -> int:
    same = True
    for run in ("single", "resumed", "two"):
        a, b = rows(Path(before) / run / "metrics_log.csv"), rows(Path(after) / run / "metrics_log.csv")
        columns = [c for c in a[0] if "second" not in c and "latency" not in c and c != "trial"]
        rows_same = [[r.get(c) for c in columns] for r in a] == [[r.get(c) for c in columns] for r in b]
        header_same = list(a[0]) == list(b[0])
        print(f"{run}: {len(a)} and {len(b)} rows; header {'same' if header_same else 'DIFFERS'}; "
              f"rows {'same' if rows_same else 'DIFFER'} ({len(columns)} columns compared)")
        same = same and rows_same and header_same
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
