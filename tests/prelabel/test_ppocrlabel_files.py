"""The folder PPOCRLabel opens: Cache.cach as its loader reads it (the rules are pinned from PPOCRLabel 3.1.6's
own code, quoted in ocr_tasks/prelabel/ppocrlabel_files.py), and the hardest-first ranking."""

from __future__ import annotations

import json

from ocr_tasks.prelabel.ppocrlabel_files import read_cache_file, write_ppocrlabel_folder
from ocr_tasks.prelabel.ranking import rank_images, uncertainty_of, write_ranking


def test_cache_file_reads_back_in_ppocrlabel_with_every_text_intact(tmp_path):
    folder = tmp_path / "batch_7"
    predictions = {
        "a.jpg": [([[1.4, 2], [30, 2], [30.6, 20], [1, 20]], "nullable true/false"), ([[5, 5], [9, 5], [9, 9], [5, 9]], "发票\t号")],
        "b.png": [],
    }
    write_ppocrlabel_folder(folder, predictions)
    labels = read_cache_file(folder / "Cache.cach")
    # keys: PPOCRLabel's getImglabelidx of the files it lists when the folder is opened
    assert set(labels) == {"batch_7/a.jpg", "batch_7/b.png"}
    first, second = labels["batch_7/a.jpg"]
    assert first == {"transcription": "nullable true/false", "points": [[1, 2], [30, 2], [31, 20], [1, 20]],
                     "difficult": False}
    assert second["transcription"] == "发票\t号" and labels["batch_7/b.png"] == []
    # the same file is plain JSON per line too (what other tools read)
    line = (folder / "Cache.cach").read_text(encoding="utf-8").splitlines()[0]
    assert json.loads(line.split("\t", 1)[1])[0]["transcription"] == "nullable true/false"
    # nothing confirmed: PPOCRLabel counts any fileState.txt line as confirmed
    assert (folder / "fileState.txt").read_text() == "" and (folder / "Label.txt").read_text() == ""


def test_the_least_sure_images_come_first(tmp_path):
    assert uncertainty_of([], [], 0.6) == (1.0, "no text found")
    assert uncertainty_of([0.99, 0.42], [0.95], 0.6) == (0.5800000000000001, "unsure reading")
    value, why = uncertainty_of([0.99], [0.62], 0.6)
    assert why == "borderline box" and value > 0.9
    reads = {"sure.jpg": {"lines": [{"score": 0.99, "text": "1", "poly": []}], "box_scores": [0.97]},
             "blank.jpg": {"lines": [], "box_scores": []},
             "unsure.jpg": {"lines": [{"score": 0.55, "text": "7", "poly": []}], "box_scores": [0.9]}}
    rows = rank_images(reads)
    assert [r.image for r in rows] == ["blank.jpg", "unsure.jpg", "sure.jpg"] and [r.rank for r in rows] == [1, 2, 3]

    from PIL import Image

    images = tmp_path / "batch"
    images.mkdir()
    for name in reads:
        Image.new("RGB", (640, 320), "white").save(images / name)
    write_ranking(rows, tmp_path, images, "20261201T020000Z")
    csv_lines = (tmp_path / "ranking.csv").read_text().splitlines()
    assert csv_lines[0].startswith("rank,image,uncertainty") and csv_lines[1].startswith("1,blank.jpg,1.0")
    page = (tmp_path / "ranking.html").read_text()
    assert page.index("<td>blank.jpg</td>") < page.index("<td>unsure.jpg</td>") < page.index("<td>sure.jpg</td>")
    assert "thumbs/blank.jpg.jpg" in page and (tmp_path / "thumbs" / "blank.jpg.jpg").stat().st_size > 0


def test_two_images_with_one_stem_keep_their_own_thumbnails(tmp_path):
    """a.jpg and a.png once shared thumbs/a.jpg: rank 1 showed the other image."""
    from PIL import Image

    images = tmp_path / "batch"
    images.mkdir()
    Image.new("RGB", (64, 32), "black").save(images / "a.jpg")
    Image.new("RGB", (64, 32), "white").save(images / "a.png")
    rows = rank_images({"a.jpg": {"lines": [], "box_scores": []},
                        "a.png": {"lines": [{"score": 0.99, "text": "1", "poly": []}], "box_scores": [0.99]}})
    write_ranking(rows, tmp_path / "out", images, "v1")
    shades = {name: Image.open(tmp_path / "out" / "thumbs" / f"{name}.jpg").convert("L").getpixel((5, 5))
              for name in ("a.jpg", "a.png")}
    assert shades["a.jpg"] < 30 and shades["a.png"] > 225        # each row shows its own image
    page = (tmp_path / "out" / "ranking.html").read_text()
    assert 'src="thumbs/a.jpg.jpg"' in page and 'src="thumbs/a.png.jpg"' in page


def test_the_ranking_page_shows_upload_names_as_text_and_links_them_quoted(tmp_path):
    from PIL import Image

    images = tmp_path / "<b>batch&"
    images.mkdir()
    name = '<img src=x onerror="alert(1)"> #1?.jpg'
    Image.new("RGB", (64, 32), "white").save(images / name, format="JPEG")
    write_ranking(rank_images({name: {"lines": [], "box_scores": []}}), tmp_path / "out", images, "v<1>")
    page = (tmp_path / "out" / "ranking.html").read_text()
    assert "<b>" not in page and "<img src=x" not in page
    assert "<td>&lt;img src=x onerror=&#34;alert(1)&#34;&gt; #1?.jpg</td>" in page
    assert "&lt;b&gt;batch&amp;: hardest first" in page and "model v&lt;1&gt;" in page
    assert 'src="thumbs/%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E%20%231%3F.jpg.jpg"' in page
