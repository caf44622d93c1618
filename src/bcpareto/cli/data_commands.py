"""`bcpareto data check` and `bcpareto data download`."""

from __future__ import annotations

from pathlib import Path

import click

from ..dataset import (
    DEFAULT_DATA_DIR,  # stdlib-only module: importing it keeps --help fast
)
from ..errors import (
    BcParetoError,
    DataError,
)
from .main import _errors, cli


@cli.group()
def data() -> None:
    """Check or download the blood-cell images."""


@data.command("check")
@click.argument("data_dir", metavar="[DIR]", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON instead of a table.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Threads reading images.")
@click.option("--groups/--no-groups", default=True, show_default=True,
              help="Also recover the source groups (the augmented copies of one original smear; "
              "a few minutes the first time for 12.5k images, then cached) and count the TEST "
              "images that share a smear with TRAIN.")
@click.option("--contact-sheet", type=click.Path(dir_okay=False, path_type=Path), metavar="PNG",
              help="Save a contact sheet of 12 random source groups (one row each) to judge them by eye.")
def data_check(data_dir: Path | None, as_json: bool, workers: int | None, groups: bool,
               contact_sheet: Path | None) -> None:
    """Audit the data set in DIR (default: $BCPARETO_DATA, else data/blood-cells).

    Counts images per split and class; finds unreadable, truncated and non-image files, image
    sizes and modes, missing class folders, and byte-identical duplicates within and across splits;
    recovers the source groups. Exit code 0: usable; 1: not usable (problems listed); 2: DIR is
    not a data set.
    """
    import json

    from ..audit import audit_dataset, group_files, render_groups, render_table
    from ..dataset import default_data_dir

    root = data_dir if data_dir is not None else default_data_dir()
    if contact_sheet is not None:
        from ..runs import check_creatable_dir

        with _errors():
            check_creatable_dir(contact_sheet.parent, option="--contact-sheet")
    try:
        report = audit_dataset(root, workers=workers)
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="DIR") from exc
    summary = None
    if (groups or contact_sheet) and report.usable:
        from ..groups import contact_sheet as draw_sheet
        from ..groups import find_groups

        found = find_groups(group_files(report), progress=None if as_json else click.echo)
        summary = found.summary()
        if contact_sheet is not None:
            draw_sheet(found, contact_sheet)
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "source_groups": summary}, indent=2))
    else:
        click.echo(render_table(report))
        if summary is not None:
            click.echo("\n" + render_groups(summary))
        if contact_sheet is not None and summary is not None:
            click.echo(f"Contact sheet: {contact_sheet}")
    if not report.usable:
        raise SystemExit(1)


@data.command("download")
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Where the images folder appears (a link into kagglehub's cache, or a copy).",
)
def data_download(dest: Path) -> None:
    """Fetch Kaggle's paultimothymooney/blood-cells with kagglehub and link its images to DEST."""
    import shlex

    from ..download import download_dataset, present_dataset

    try:
        present = present_dataset(dest)
        path = present or download_dataset(dest=dest)
    except BcParetoError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Data set ready: {path} -> {path.resolve()}"
               + (" (already there; nothing downloaded)" if present else ""))
    if path == DEFAULT_DATA_DIR:
        click.echo("bcpareto finds it when run from this folder; from anywhere else, set:")
    else:
        click.echo(f"Pass --data-dir {shlex.quote(str(path))} to bcpareto, or set:")
    click.echo(f"BCPARETO_DATA={shlex.quote(str(path.resolve()))}")
