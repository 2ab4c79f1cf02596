"""tools/compare_modes.py: the document's modes per model, and the table read back."""
import csv
import hashlib
import os
import re

from conftest import TINY_TRAIN_ARGS, run_script
from tools.report.modes_table import format_tables, mode_overrides, read_summary


def test_modes_follow_the_block_mapping():
    mnv3 = mode_overrides("mobilenet_v3_small_100")
    assert mnv3["freeze_shallow"] == ["--freeze_layers", "7"]
    assert mnv3["deep_lr"] == ["--lr_mult", "features.13=1.05", "features.14=1.1", "features.15=1.15"]
    assert mnv3["classifier_lr"] == ["--lr_mult", "classifier=1.2"]
    assert mnv3["freeze_then_full"] == ["--freeze_epochs", "1"]
    assert mode_overrides("mobilenet_v3_small_100", freeze_epochs=3)["freeze_then_full"] == ["--freeze_epochs", "3"]
    resnet = mode_overrides("resnet18")
    assert resnet["deep_lr"] == ["--lr_mult", "layer2=1.05", "layer3=1.1", "layer4=1.15"]
    assert resnet["freeze_shallow"] == ["--freeze_layers", "2"]          # stem + layer1 of 5 blocks


def test_table_has_document_column_order():
    result = {"top1": 0.5, "top5": 0.9, "trainable": 1234, "sec_per_epoch": 2.0}
    markdown, table_csv = format_tables({m: result for m in ("freeze_all", "freeze_shallow", "full")})
    header = markdown.splitlines()[0]
    assert header.index("Freeze all") < header.index("Freeze shallow") < header.index("Full, one lr")
    assert "| Top-1 | 50.00% | 50.00% | 50.00% |" in markdown
    assert table_csv.splitlines()[0] == "measure,freeze_all,freeze_shallow,full"


def test_two_modes_run_and_table_matches_their_results(tiny_aircraft, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data_dir: {tiny_aircraft}\n")
    proc = run_script("tools/compare_modes.py", "--config", cfg, "--out", tmp_path / "out", "--modes",
                      "freeze_all", "full", *TINY_TRAIN_ARGS, "--epoch_size", "1", "--mode", "1",
                      "--model", "resnet18")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "out" / "table.csv") as f:
        table = {row["measure"]: row for row in csv.DictReader(f)}
    for mode in ("freeze_all", "full"):
        with open(os.path.join(tmp_path, "out", mode, "results.csv")) as f:
            top1 = max(float(r["top1"]) for r in csv.DictReader(f))
        assert float(table["top1"][mode]) == top1
    assert int(table["trainable"]["freeze_all"]) < int(table["trainable"]["full"])


def test_summary_json_holds_what_the_modes_table_reads(tiny_run):
    """compare_modes reads finetune.py's summary.json; its values agree with results.csv, the printed
    parameter counts and the saved config."""
    summary = read_summary(tiny_run["out"])
    with open(os.path.join(tiny_run["out"], "results.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    best = max((r for r in rows if r["top1"]), key=lambda r: float(r["top1"]))
    assert summary["best_epoch"] == int(best["epoch"]) and summary["best_metric"] == "top1"
    assert abs(summary["best_metrics"]["top1"] - float(best["top1"])) < 1e-6
    assert abs(summary["best_metrics"]["top5"] - float(best["top5"])) < 1e-6
    seconds = [float(r["seconds"]) for r in rows]
    assert abs(summary["sec_per_epoch"] - sum(seconds[1:]) / (len(seconds) - 1)) < 1e-3
    printed = re.search(r"trainable ([\d,]+) params .*frozen ([\d,]+) params", tiny_run["stdout"])
    assert (summary["trainable_params"], summary["frozen_params"]) == tuple(
        int(g.replace(",", "")) for g in printed.groups())
    with open(os.path.join(tiny_run["out"], "config.yaml"), "rb") as f:
        assert summary["config_sha256"] == hashlib.sha256(f.read()).hexdigest()


def test_out_that_is_a_file_is_refused_before_any_run(tmp_path):
    from conftest import assert_one_line_error, run_main

    out = tmp_path / "table.md"
    out.write_text("earlier table\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data_dir: nowhere\n")
    proc = run_main("tools/compare_modes.py", "--config", cfg, "--out", out, "--modes", "full")
    assert_one_line_error(proc, "'--out'", "is a file", code=2)
    assert "[full]" not in proc.stdout and out.read_text() == "earlier table\n"
