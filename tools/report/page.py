"""``report.html``: one self-contained page per evaluation run (figures embedded as base64 PNG,
styles and the table-sorting script inline), so it opens offline and can be mailed as one file."""
import base64
import html
import os

from tools.core.errors import UsageError
from tools.core.fileio import atomic_write_text

REPORT_FILE = "report.html"

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th.sortable { cursor: pointer; background: #f0f0f0; } th.sortable:hover { background: #e0e0ff; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #666; font-size: 0.9em; }
"""

# Click a column header to sort by it (again: reverse); empty cells sort last.
_SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows), asc = th.dataset.asc !== "1";
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent, y = b.cells[col].textContent;
        if (x === "" || y === "") return (x === "") - (y === "");
        var nx = parseFloat(x), ny = parseFloat(y);
        var cmp = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
        return asc ? cmp : -cmp;
      });
      th.dataset.asc = asc ? "1" : "0";
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _text(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return str(value)


def table(header, rows, sortable=False):
    """An HTML table; numbers are right-aligned."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{_text(v)}</td>' if isinstance(v, (int, float)) and not isinstance(v, bool)
        else f"<td>{html.escape(_text(v))}</td>" for v in row) + "</tr>\n" for row in rows)
    cls = ' class="sortable"' if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def image(path, alt):
    """The PNG at ``path`` embedded as a data URI, or a note when it does not exist."""
    if not path or not os.path.isfile(path):
        return f'<p class="note">{html.escape(alt)}: not available</p>'
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def check_report_dir(path, key):
    """A report folder is replaced as a whole: refuse (UsageError, exit 2) an existing folder that holds
    files but no ``REPORT_FILE``, which is not an earlier report (a run folder, say) and would be lost."""
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(os.path.join(path, REPORT_FILE)):
        raise UsageError(f"'{key}' {path} holds files but is no report (no {REPORT_FILE}), and a report folder is "
                         "replaced as a whole: name a new folder")


def write_report(path, title, sections):
    """Write the page: ``sections`` is a list of ``(heading, html fragment)``."""
    parts = [f"<h2>{html.escape(heading)}</h2>\n{fragment}" for heading, fragment in sections]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{_STYLE}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n" + "\n".join(parts)
            + f"\n<script>{_SORT_SCRIPT}</script>\n</body></html>\n")
    atomic_write_text(path, page)
    return path


CONFIG_SUMMARY_KEYS = ("model", "ckpt_path", "data_dir", "train_split", "val_split", "image_resize", "crop_pct",
                       "interpolation", "mean", "std", "epoch_size", "batch_size", "opt", "lr", "scheduler",
                       "warmup_epochs", "weight_decay", "label_smoothing", "freeze_backbone", "freeze_layers",
                       "ema", "amp_level", "seed")


def evaluation_page(path, cfg, result, pairs, figures, top_pairs=20):
    """The report of one ``validate.py`` run: configuration, curves, metrics, per-class table,
    confusion matrix, most-confused pairs, reliability diagram and error grid.

    ``figures``: ``{name: png path}`` for ``curves``, ``confusion``, ``reliability``, ``errors`` (and ``ood``, the
    score histograms of ``validate.py --ood_dir``).
    """
    title = (f"{os.path.basename(result['checkpoint'])} on {result['split']} "
             f"({result['num_samples']} images, {result['num_classes']} classes)")
    config_rows = [(key, getattr(cfg, key)) for key in CONFIG_SUMMARY_KEYS if hasattr(cfg, key)]
    metric_keys = ("top1", "top5", "loss", "mean_per_class_acc", "macro_f1", "weighted_f1", "ece", "tta",
                   "temperature", "loss_calibrated", "ece_calibrated")
    metric_rows = [(key, result[key]) for key in metric_keys if result.get(key) is not None]
    per_class = [(name, m["support"], result["per_class"][name], m["precision"], m["recall"], m["f1"])
                 for name, m in result["per_class_prf"].items()]
    confused = [(t, p, n, share) for t, p, n, share in pairs[:top_pairs]]
    sections = [
        ("Configuration", table(["key", "value"], config_rows)),
        ("Training curves", image(figures.get("curves"), "training curves")),
        ("Metrics", table(["metric", "value"], metric_rows)),
        ("Per-class metrics (click a header to sort)",
         table(["class", "support", "accuracy", "precision", "recall", "f1"], per_class, sortable=True)),
        ("Confusion matrix", image(figures.get("confusion"), "confusion matrix")),
        (f"Most confused pairs (top {len(confused)} of {len(pairs)})",
         table(["true class", "predicted class", "count", "share of the true class"], confused)
         if confused else '<p class="note">no misclassified images</p>'),
        ("Calibration (reliability diagram)", image(figures.get("reliability"), "reliability diagram")),
        ("Highest-loss errors", image(figures.get("errors"), "error grid")),
        ("Where the model looked (Grad-CAM of the worst errors and of each most-confused pair: the class it "
         "answered, the true class)", image(figures.get("heatmaps"), "Grad-CAM heatmaps")),
    ]
    if result.get("ood"):  # validate.py --ood_dir
        found = result["ood"]
        rows = [(name, found[name]["auroc"], found[name]["fpr_at_95_tpr"]) for name in ("msp", "energy")]
        sections.append(("Out-of-distribution scores (split against the OOD folder)",
                         table(["score", "AUROC", "FPR at 95% TPR"], rows)
                         + f'<p class="note">unknown threshold (top probability, --ood_tpr {found["tpr"]:g}): '
                           f'{found["min_prob"]:.4f}</p>' + image(figures.get("ood"), "OOD score histograms")))
    return write_report(path, title, sections)
