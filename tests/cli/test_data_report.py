"""tools/data_report.py finds planted duplicates, near-duplicates and bad files; tools/show_batch.py draws
what the training pipeline gives the model."""
import csv
import io
import os

from conftest import assert_png, run_script
from tools import data_report, show_batch
from tools.core.errors import DataError
from tools.report import batch_preview
from tools.report.data_report import hamming, perceptual_hash, shared_files

import numpy as np
import pytest
from PIL import Image

CLASSES = ["F-16A/B", "Cessna 172, float", "707-320"]


def smooth_image(seed, side=64):
    """A distinct picture with content at low frequencies, as photos have (random 8x8 colours, upscaled)."""
    small = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((side, side), Image.BILINEAR)


def write_split(root, split, rows):
    with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "label"])
        writer.writerows(rows)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A list dataset with a planted exact copy, near copy, shared file and corrupt file; the report on it."""
    root = tmp_path_factory.mktemp("report") / "data"
    os.makedirs(root / "img")
    rows = {"train": [], "val": []}
    for i in range(18):
        smooth_image(i).save(root / "img" / f"{i:02d}.jpg", quality=95)
        rows["train" if i < 12 else "val"].append((f"img/{i:02d}.jpg", CLASSES[i % 3]))
    (root / "img" / "copy.jpg").write_bytes((root / "img" / "00.jpg").read_bytes())  # exact copy of a train image
    near = Image.open(root / "img" / "01.jpg").resize((52, 52), Image.BILINEAR)
    buffer = io.BytesIO()
    near.save(buffer, "JPEG", quality=70)  # resized and re-encoded: other bytes, same picture
    (root / "img" / "near.jpg").write_bytes(buffer.getvalue())
    whole = (root / "img" / "03.jpg").read_bytes()
    (root / "img" / "bad.jpg").write_bytes(whole[: len(whole) // 2])  # truncated
    rows["val"] += [("img/copy.jpg", CLASSES[0]), ("img/near.jpg", CLASSES[1]), ("img/02.jpg", CLASSES[2])]
    rows["train"].append(("img/bad.jpg", CLASSES[0]))
    for split, split_rows in rows.items():
        write_split(root, split, split_rows)
    before = sorted(os.listdir(root)), sorted(os.listdir(root / "img"))
    out = root.parent / "report"
    proc = run_script("tools/data_report.py", "--data_dir", root, "--out_dir", out)
    assert proc.returncode == 0, proc.stderr
    assert (sorted(os.listdir(root)), sorted(os.listdir(root / "img"))) == before  # the data is only read
    return {"root": root, "rows": rows, "out": out, "text": (out / "data_report.md").read_text(encoding="utf-8"),
            "stdout": proc.stdout}


def section(text, title):
    """The lines of the report's section whose heading starts with ``title``."""
    lines = text.split(f"\n## {title}", 1)[1].split("\n## ", 1)[0].splitlines()
    return lines


def test_counts_per_class_and_split(planted):
    rows = section(planted["text"], "Images per class and split")
    table = {line.split(" | ")[0][2:].replace("\\|", "|"): line
             for line in rows if line.startswith("| ") and "---" not in line}
    for name in CLASSES:
        expected = [sum(1 for path, label in planted["rows"][s] if label == name and path != "img/bad.jpg")
                    for s in ("train", "val")]
        cells = table[name].strip("| ").split(" | ")[1:]
        assert [int(c) for c in cells] == expected, (name, cells)
    assert_png(planted["out"] / "class_counts.png", 1080, 360)


def test_unreadable_file_is_listed_with_its_reason(planted):
    rows = section(planted["text"], "Unreadable files")
    assert rows[0].endswith(": 1")
    bad = [line for line in rows if "bad.jpg" in line]
    assert len(bad) == 1 and "| train |" in bad[0] and "corrupt or truncated image" in bad[0]


def test_planted_exact_duplicate_across_splits(planted):
    rows = section(planted["text"], "Exact duplicates")
    assert rows[0].endswith(": 1 groups, 1 across splits")
    group = [line for line in rows if line.startswith("| 1 |")]
    assert sorted(line.split(" | ")[1] for line in group) == ["train", "val"]
    assert any(line.endswith("img/00.jpg |") for line in group)
    assert any(line.endswith("img/copy.jpg |") for line in group)


def test_planted_near_duplicate_and_nothing_else(planted):
    rows = section(planted["text"], "Near-duplicates across splits")
    pairs = [line for line in rows if line.startswith("| ") and line[2].isdigit()]
    assert len(pairs) == 1, pairs
    assert "img/01.jpg" in pairs[0] and "img/near.jpg" in pairs[0]


def test_file_listed_in_two_splits_is_a_leak(planted):
    rows = section(planted["text"], "Files listed in two splits")
    assert rows[0].endswith(": 1")
    assert "- train and val: 1 files (leak)" in rows


def test_a_union_split_is_not_called_a_leak():
    records = [dict(split=s, path=p) for s, p in [("trainval", "a"), ("trainval", "b"), ("train", "a"), ("test", "b")]]
    shared = shared_files(records, {"trainval": None, "train": None, "test": None})
    assert shared == [("trainval", "train", 1, True), ("trainval", "test", 1, True)]


def test_perceptual_hash_distance_matches_bit_count():
    a = perceptual_hash(smooth_image(0))
    b = perceptual_hash(smooth_image(1))
    expected = bin(int.from_bytes(a.tobytes(), "big") ^ int.from_bytes(b.tobytes(), "big")).count("1")
    assert hamming(a[None], b[None])[0, 0] == expected
    assert hamming(a[None], a[None])[0, 0] == 0


def test_report_on_an_unsplit_folder_and_a_bad_folder(tmp_path):
    for k, name in enumerate(["cat", "dog"]):
        os.makedirs(tmp_path / "d" / name)
        for i in range(2 + k):
            smooth_image(10 * k + i).save(tmp_path / "d" / name / f"{i}.png")
    assert data_report.main(["--data_dir", str(tmp_path / "d"), "--out_dir", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "data_report.md").read_text(encoding="utf-8")
    assert "split 'all': 5 images, 2 classes; images per class min 2 / median 2.5 / max 3" in text
    assert "- modes: RGB 5" in text and "- formats: PNG 5" in text
    with pytest.raises(DataError, match="data_dir not found"):
        data_report.main(["--data_dir", str(tmp_path / "none")])


# ---- show_batch ----------------------------------------------------------------------------------

def test_pixels_undo_the_normalisation():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 5, 7, 3)).astype(np.float32)
    mean, std = [10.0, 20.0, 30.0], [50.0, 60.0, 70.0]
    normalised = ((pixels - mean) / std).transpose(0, 3, 1, 2)
    assert np.array_equal(batch_preview.to_pixels(normalised, mean, std), pixels.astype(np.uint8))


def test_titles_of_plain_and_mixed_labels():
    names = ["a", "b", "c"]
    assert batch_preview.titles(np.array([2, 0]), names) == ["c", "a"]
    mixed = np.array([[0.0, 0.7, 0.3], [0.0, 0.0, 1.0]])
    assert batch_preview.titles(mixed, names) == ["b 0.70 + c 0.30", "c"]


def test_the_drawn_samples_are_the_augmented_training_images(tiny_aircraft):
    """With a crop of the whole image and hflip always, each sample is its source image flipped."""
    from tools.core.config import parse_config

    cfg = parse_config(["--data_dir", tiny_aircraft, "--train_split", "trainval", "--dataset", "", "--n", "4",
                        "--image_resize", "28", "--scale", "1", "1", "--ratio", "1", "1", "--hflip", "1",
                        "--color_jitter", "0", "--shuffle", "False", "--num_parallel_workers", "1",
                        "--check_cache_dir", "off"], "test", extra=show_batch.EXTRA)
    images, names, paths = batch_preview.sample_batch(cfg, cfg.train_split, cfg.n)
    assert images.shape == (4, 28, 28, 3) and images.dtype == np.uint8
    for image, path in zip(images, paths):
        source = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        flipped = np.abs(image - source[:, ::-1]).mean()
        assert flipped < 2 < np.abs(image - source).mean(), (flipped, path)
    labels = [line.split(" ", 1)[1] for line in open(os.path.join(tiny_aircraft, "images_variant_trainval.txt"),
                                                     encoding="utf-8").read().splitlines()]
    assert names == labels[:4]


def test_show_batch_writes_the_grid(tiny_aircraft, tmp_path):
    out = tmp_path / "batch.png"
    proc = run_script("tools/show_batch.py", "--data_dir", tiny_aircraft, "--train_split", "trainval", "--dataset", "",
                      "--n", "6", "--image_resize", "32", "--auto_augment", "randaug-m7-mstd0.5",
                      "--num_parallel_workers", "1", "--out", out, "--check_cache_dir", "off")
    assert proc.returncode == 0, proc.stderr
    assert "6 samples of split 'trainval' after augmentation" in proc.stdout
    assert_png(out, 600, 400)  # 2 rows x 3 columns of 2-inch cells at 100 dpi


def test_show_batch_writes_the_format_its_extension_names(tiny_aircraft, tmp_path):
    from conftest import assert_one_line_error, run_main

    args = ["--data_dir", tiny_aircraft, "--train_split", "trainval", "--dataset", "", "--n", "2", "--image_resize",
            "32", "--num_parallel_workers", "1", "--check_cache_dir", "off"]
    proc = run_main("tools/show_batch.py", *args, "--out", tmp_path / "batch.gif")
    assert_one_line_error(proc, "'out'", "batch.gif", ".png, .jpg, .jpeg", code=2)
    assert os.listdir(tmp_path) == []
    proc = run_main("tools/show_batch.py", *args, "--out", tmp_path / "batch.jpg")
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "batch.jpg") as image:
        assert image.format == "JPEG" and image.size == (400, 200)
