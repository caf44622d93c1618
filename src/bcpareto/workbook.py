"""The workbook: an .xlsx file opened with clear errors, its sheets read as cells with cell-precise errors.

The grid sheet (gridspec.py) and the space sheet (space.py) are two sheets of one workbook and
are read the same way, here: the file opened (a missing file or one that is not .xlsx is a
clear error), a sheet found (the first one, or one by name), its header row matched against
the known column names (any case and spacing, '_' as a space; a note column skipped; any other
header an error naming the close known names), and each bad cell told as ``cell B3 (name):
what is wrong; expected the form``, every one collected and raised once as a GridSpecError.
What a cell must hold is the caller's concern: this module knows cells, not grid points. No
TensorFlow here; openpyxl is imported when a workbook is opened.
"""

from __future__ import annotations

import ast
import difflib
import re
import zipfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import GridSpecError

# Headers of columns a reader skips: notes for people (any case), or any header starting with
# '#'. Every other header must name a column: a misspelled one ('blok') is an error, since
# skipping it would train other models than the sheet asks for.
NOTE_HEADERS = ("note", "notes", "comment", "comments", "description", "remark", "remarks")

Row = tuple[Any, ...]
Columns = Mapping[str, tuple[str, ...]]  # canonical column name -> accepted header spellings


@dataclass(frozen=True)
class Sheet:
    """One sheet's cell values (not formulas), row by row: ``rows[0]`` is sheet row 1."""

    path: Path
    title: str
    rows: tuple[Row, ...]

    @property
    def where(self) -> str:
        """How a message names the sheet: ``<file>, sheet '<title>'``."""
        return f"{self.path}, sheet '{self.title}'"

    @property
    def empty(self) -> bool:
        """No header row: no rows at all, or a blank first row."""
        return not self.rows or all(blank(v) for v in self.rows[0])

    @property
    def header(self) -> Row:
        return self.rows[0]

    def data_rows(self) -> list[tuple[int, Row]]:
        """The non-blank rows under the header, each with its sheet row number (from 2)."""
        return [
            (number, row)
            for number, row in enumerate(self.rows[1:], start=2)
            if not all(blank(v) for v in row)
        ]


def open_workbook(path: Path) -> Any:
    """The workbook, read-only with cell values (not formulas); the caller closes it."""
    import openpyxl  # deferred: keeps `bcpareto --help` fast

    if not path.is_file():
        raise GridSpecError(f"{path}: no such file; expected an .xlsx grid sheet")
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise GridSpecError(
            f"{path}: not a readable .xlsx workbook ({type(exc).__name__}: {exc}); "
            "save the sheet as Excel Workbook (.xlsx)"
        ) from exc


def first_sheet(path: Path) -> Sheet:
    """The workbook's first sheet (every workbook has one)."""
    workbook = open_workbook(path)
    try:
        return _sheet(path, workbook.worksheets[0])
    finally:
        workbook.close()


def find_sheet(path: Path, name: str) -> Sheet | None:
    """The sheet called `name` (any case, spaces around the title ignored), or None.

    Whether a missing sheet is an error is the caller's to say: a workbook without a `space`
    sheet is a plain grid.
    """
    workbook = open_workbook(path)
    try:
        found = (s for s in workbook.worksheets if s.title.strip().lower() == name.lower())
        sheet = next(found, None)
        return None if sheet is None else _sheet(path, sheet)
    finally:
        workbook.close()


def _sheet(path: Path, sheet: Any) -> Sheet:
    return Sheet(path, sheet.title, tuple(tuple(r) for r in sheet.iter_rows(values_only=True)))


def sheet_error(where: str, problems: Sequence[str]) -> GridSpecError:
    """Every problem of a sheet in one error, one problem a line under the sheet's name."""
    return GridSpecError(f"{where}:\n  " + "\n  ".join(problems))


# --- cells ---------------------------------------------------------------------------------


def blank(value: object) -> bool:
    """An empty cell, or one holding only spaces."""
    return value is None or (isinstance(value, str) and not value.strip())


def col_letter(col: int) -> str:
    """Excel's letters of a 0-based column index: 0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    col += 1
    while col:
        col, rem = divmod(col - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def cell_ref(col: int, row: int, column: str) -> str:
    """How a message names a cell: ``cell B3 (neurons)``, with the column's canonical name."""
    return f"cell {col_letter(col)}{row} ({column})"


def bad_cell(col: int, row: int, column: str, problem: str, expected: str) -> str:
    """One bad cell's line: ``cell B3 (neurons): <problem>; expected <the form>``."""
    return f"{cell_ref(col, row, column)}: {problem}; expected {expected}"


def cell_value(row: Row, col: int | None) -> Any:
    """The value at `col` of a row (None for a column the sheet lacks or a short row)."""
    return row[col] if col is not None and col < len(row) else None


def cell_number(raw: object) -> float | int | None:
    """A number from a number cell or a cell of text such as '3' or '0.5'; else None."""
    if isinstance(raw, str):
        try:
            raw = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    return raw


def parse_yes_no(raw: object) -> tuple[bool, str | None]:
    """A yes/no cell: yes, true, y / no, false, n (any case), Excel's TRUE/FALSE, or blank (no).

    Returns (the value, None) or (False, what is wrong), for the caller's ``expected`` sentence.
    """
    if blank(raw):
        return False, None
    if isinstance(raw, bool):
        return raw, None
    text = str(raw).strip().lower()
    if text in ("yes", "true", "y"):
        return True, None
    if text in ("no", "false", "n"):
        return False, None
    return False, f"{str(raw).strip()!r} is not yes or no"


def parse_words(raw: object, *, what: str) -> tuple[tuple[str, ...], str | None]:
    """A list of words: ``separable``, ``[conv, separable]`` or ``['conv']``; quotes optional.

    `what` names one word in the messages ("block type"). Returns (the words, None) or
    ((), what is wrong).
    """
    if not isinstance(raw, str):
        return (), f"{raw!r} is not a list of {what}s"
    text = raw.strip()
    if text.startswith("[") != text.endswith("]"):
        return (), f"{text!r} has unbalanced brackets"
    words = [w.strip().strip("'\"").strip() for w in text.strip("[]").split(",")]
    if len(words) > 1 and not words[-1]:
        words.pop()  # a trailing comma
    if not any(words):
        return (), f"{text!r} names no {what}"
    if not all(words):
        return (), f"{text!r} has an empty entry"
    return tuple(words), None


# --- the header row ------------------------------------------------------------------------


def normalise_header(value: object) -> str:
    """A header as matched: lower case, '_' as a space, runs of spaces as one, trimmed."""
    text = str(value).replace("_", " ").lower()
    return re.sub(r"\s+", " ", text).strip()


def header_hint(columns: Columns) -> str:
    """``with columns 'a', 'b'``: the canonical names, for an ``expected`` sentence."""
    return "with columns " + ", ".join(f"'{c}'" for c in columns)


def match_headers(header: Row, columns: Columns, *, skip: Collection[int] = ()) -> dict[str, int]:
    """Column index of each canonical name whose spelling (any case, spacing, '_') the header
    has; the first such column wins, and columns in `skip` are passed over."""
    found: dict[str, int] = {}
    for col, value in enumerate(header):
        if blank(value) or col in skip:
            continue
        norm = normalise_header(value)
        for name, spellings in columns.items():
            if norm == normalise_header(name) or norm in spellings:
                found.setdefault(name, col)
    return found


def check_header(header: Row, columns: Columns) -> list[str]:
    """Row 1's headers that name no column (nor a note, nor '#...'), and second copies of one.

    Each problem names the cell and the header, and the close column names (difflib), so
    `blok` says "did you mean block?".
    """
    canonical: dict[str, str] = {}  # every accepted spelling, normalised -> the column's name
    for name, spellings in columns.items():
        canonical.setdefault(normalise_header(name), name)
        for spelling in spellings:
            canonical.setdefault(spelling, name)
    known = ", ".join(columns)
    first: dict[str, int] = {}
    problems: list[str] = []
    for col, value in enumerate(header):
        if blank(value):
            continue
        norm, text, ref = normalise_header(value), str(value).strip(), f"cell {col_letter(col)}1"
        if norm in canonical:
            name = canonical[norm]
            if name in first:
                problems.append(
                    f"{ref}: {text!r} is a second {name} column (the first is cell "
                    f"{col_letter(first[name])}1); expected one column per name"
                )
            first.setdefault(name, col)
        elif norm not in NOTE_HEADERS and not norm.startswith("#"):
            close = difflib.get_close_matches(norm, list(canonical), n=6, cutoff=0.6)
            names = list(dict.fromkeys(canonical[c] for c in close))[:3]
            hint = f" (did you mean {' or '.join(names)}?)" if names else ""
            problems.append(
                f"{ref}: unknown column {text!r}{hint}; expected a column out of {known}, or a "
                "note the reader skips (header 'note', or any header starting with '#')"
            )
    return problems


def missing_columns(
    where: str, header: Row, *, missing: str, expected: str, header_problems: Sequence[str] = ()
) -> GridSpecError:
    """Row 1 lacks columns the sheet needs: the error names them, the headers it found, the
    form expected, and any other header problem (a misspelled header is often the cause)."""
    present = ", ".join(repr(v) for v in header if not blank(v)) or "none"
    return GridSpecError(
        f"{where}, row 1: missing column(s) {missing}; found headers {present}; "
        f"expected {expected}" + "".join(f"\n  {p}" for p in header_problems)
    )
