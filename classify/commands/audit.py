"""`featurecache audit` / `make audit`: the data of a cache audited in feature space.

Reads one cache (default: the one features/LATEST names), of any split layout, and finds

    near-duplicates  pairs of images whose L2-normalised features have cosine similarity >= --threshold,
                     within each split and across splits (train-test pairs are leaks); blocked matrix
                     products (classify.workflows.neighbours), so memory stays bounded however large the cache
    label errors     training images whose given label the features disagree with: 5-fold out-of-fold
                     LR probabilities and cleanlab's find_label_issues (classify.workflows.label_issues)
    outliers         images far from every class: mean cosine distance to their k nearest training images

and writes under --out-dir (default reports/):

    <cache>-audit.json           the record (classify.workflows.audit_record): pairs, suspects, outliers, threshold, counts
    <cache>-audit-pairs.csv      one row per pair: sources, splits, rows, similarity
    <cache>-audit-suspects.csv   one row per suspect, most likely first: source, given, predicted, score
    <cache>-audit-duplicates.png duplicate pairs side by side (train-test leaks first)
    <cache>-audit-labels.png     suspected label errors with given and predicted label

Once a cache has an audit in a reports folder, every classify run there on that cache reports accuracy
on the test rows with no near-duplicate in train beside the raw accuracy, and
`classify --exclude <cache>-audit.json:duplicates|label-issues` trains without the flagged rows.

    featurecache audit --features features/cifar10-x.h5 --out-dir reports
"""

from __future__ import annotations


import click

from classify.options import CONTEXT, Finite, cache_path, echo_written
from classify.workflows.audit import THRESHOLD, run_audit, summary, write_audit
from classify.workflows.neighbours import K_NEIGHBOURS
from featurecache.cache import read_cache
from featurecache.command import Command


@click.command(cls=Command, context_settings=CONTEXT)
@click.option("--features", type=click.Path(path_type=str), default=None,
              help="Feature cache (.h5) written by extract. Default: the one features/LATEST names.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=str), default="reports", show_default=True,
              help="Folder for the audit record, CSVs and galleries (a classify run there reads the audit).")
@click.option("--threshold", type=Finite(-1, 1), default=THRESHOLD, show_default=True,
              help="Near-duplicate: cosine similarity of L2-normalised features at or above this (docs/audit.md).")
@click.option("--k", "k", type=click.IntRange(1, 100), default=K_NEIGHBOURS, show_default=True,
              help="Nearest training images averaged in the outlier score.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the 5-fold split of the label step.")
@click.option("--no-labels", is_flag=True, help="Skip the label-error step (duplicates and outliers only).")
def cli(features: str | None, out_dir: str, threshold: float, k: int, seed: int, no_labels: bool) -> None:
    """Audit a cache's data in feature space: near-duplicates within and across splits (train-test
    leaks), likely label errors (out-of-fold LR + cleanlab) and outliers. Writes the audit record,
    CSVs and galleries under --out-dir; classify runs there then report clean-test accuracy."""
    from classify.runs.outputs import check_out_dir

    path = cache_path(features)
    out = check_out_dir(out_dir)
    click.echo(f"audit: {path}, threshold {threshold:g}{' (default)' if threshold == THRESHOLD else ''}, "
               f"k {k}, seed {seed}{', no label step' if no_labels else ''}", err=True)
    audit = run_audit(path, threshold, k, seed, labels=not no_labels)
    cache = read_cache(path, features=False)
    written, notes = write_audit(cache, audit, out)
    for line in summary(audit):
        click.echo(line)
    for key, why in notes.items():
        click.echo(f"no {key.replace('_png', '')} gallery: {why}")
    click.echo("wrote:")
    echo_written(written, out)


def main() -> None:
    cli(prog_name="featurecache audit")


if __name__ == "__main__":
    main()
