"""`featurecache report --out-dir DIR` / `make report`: rebuild the offline page over every run in a
reports folder (<out-dir>/index.html and best.json; classify.reporting.report says what they hold).

    featurecache report --out-dir reports
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import click

from classify.reporting.report import read_runs, write_index
from featurecache.command import Command
from featurecache.errors import UserError


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=str), default="reports", show_default=True,
              help="Reports folder to index (where classify and compare wrote their runs).")
def cli(out_dir: str) -> None:
    """Rebuild <out-dir>/index.html from the runs and figures in the folder: a table of runs sorted by
    test accuracy, and per run its curves, confusion matrix, gallery, report, settings and cache.
    Runs whose files were deleted drop out. Open the page in any browser; it needs no network."""
    if not Path(out_dir).is_dir():
        raise UserError(f"no reports folder at {out_dir}: run `make classify` or `make compare` first, or pass --out-dir")
    path = write_index(out_dir)
    page_runs, skipped = read_runs(path.parent)
    for line in skipped:
        click.echo(f"skipped: {path.parent / line}", err=True)
    click.echo(f"wrote {path} ({len(page_runs)} run(s)); open it in a browser: file://{quote(str(path))}")


def main() -> None:
    cli(prog_name="featurecache report")


if __name__ == "__main__":
    main()
