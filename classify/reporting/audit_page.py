"""The report page's audit section: each audit in the folder, its counts, files and galleries.

`classify.reporting.report` calls `audits_html` with the folder it indexes; nothing here writes files.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from urllib.parse import quote

from classify.workflows.audit_record import SUFFIX, Audit
from featurecache.errors import UserError

FIGURE_ENDINGS = ("-audit-duplicates.png", "-audit-labels.png")   # drawn in this section, not in "other figures"


def audits_html(folder: Path) -> str:
    """An "Audits" section for every readable audit record in `folder` ("" when there is none)."""
    parts = []
    for path in sorted(Path(folder).glob("*" + SUFFIX)):
        try:
            audit = Audit.load(path)
        except UserError:
            continue
        parts.append(one_audit(path, audit))
    return "<h2>Audits</h2>\n" + "\n".join(parts) if parts else ""


def one_audit(path: Path, audit: Audit) -> str:
    c = audit.counts
    base = path.name[: -len(".json")]
    kinds = ", ".join(f"{k[len('pairs_'):]} {v:,}" for k, v in sorted(c.items()) if k.startswith("pairs_"))
    text = (f"<p><b>{escape(Path(audit.cache_path).stem)}</b> (cache <code>{escape(audit.cache_id)}</code>): "
            f"{c.get('pairs', 0):,} near-duplicate pair(s) at cosine &ge; {audit.threshold:g} ({escape(kinds or 'none')}); "
            f"{c.get('test_rows_with_train_duplicate', 0):,} of {audit.splits.get('test', 0):,} test rows have a "
            f"near-duplicate in train (runs on this cache report accuracy without them as <i>clean test accuracy</i>); "
            f"{c.get('suspects', 0):,} suspected label error(s) among {audit.splits.get('train', 0):,} training rows.</p>")
    files = [f'<a href="{quote(n)}">{escape(n)}</a>' for n in
             (path.name, f"{base}-pairs.csv", f"{base}-suspects.csv") if (path.parent / n).is_file()]
    figures = [f'<figure><a href="{quote(n)}"><img src="{quote(n)}" alt="{escape(n)}"></a>'
               f"<figcaption>{escape(n)}</figcaption></figure>"
               for n in (f"{base}-duplicates.png", f"{base}-labels.png") if (path.parent / n).is_file()]
    return "\n".join([f'<section class="audit">{text}', "<p>files: " + " · ".join(files) + "</p>", *figures,
                      "</section>"])
