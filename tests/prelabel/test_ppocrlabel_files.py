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


def _box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _colours(picture, area) -> set[str]:
    """The colours the page draws with, found in `area` of a picture (JPEG's blur between them ignored)."""
    named = {"white": (255, 255, 255), "red": (220, 0, 0), "green": (0, 150, 60), "orange": (255, 140, 0),
             "blue": (0, 110, 230)}
    crop = picture.crop(area)
    found = set()
    for x in range(crop.width):
        for y in range(crop.height):
            pixel = crop.getpixel((x, y))
            name, far = min(((n, sum(abs(a - b) for a, b in zip(pixel, c))) for n, c in named.items()),
                            key=lambda item: item[1])
            if far < 90:
                found.add(name)
    return found


def test_the_ranking_page_draws_each_images_boxes_lists_its_reads_and_says_why_it_ranks_there(tmp_path):
    """Per image: its polygons drawn on its picture, its reads beside it, and a reason from its own numbers
    (once every row said "borderline box", the easiest image included)."""
    from PIL import Image, ImageChops

    from ocr_tasks.prelabel.prelabel import _reads_by_name

    hostile = "<script>alert(1)</script>\u202e"
    top, bottom = _box(40, 40, 400, 120), _box(40, 200, 300, 260)
    answer = {"ocr": [{"image": "/x/misread.jpg", "lines": [{"poly": top, "text": hostile, "score": 0.41},
                                                            {"poly": bottom, "text": "ok", "score": 0.97}]},
                      {"image": "/x/faint.jpg", "lines": [{"poly": top, "text": "faint", "score": 0.93}]},
                      {"image": "/x/easy.jpg", "lines": [{"poly": top, "text": "TOTAL 12.50", "score": 0.99},
                                                         {"poly": bottom, "text": "VAT", "score": 0.98}]},
                      {"image": "/x/blank.jpg", "lines": []}],
              "det": [{"image": "/x/misread.jpg", "polys": [top, bottom], "scores": [0.9, 0.88]},
                      {"image": "/x/faint.jpg", "polys": [top], "scores": [0.62]},
                      {"image": "/x/easy.jpg", "polys": [top, bottom], "scores": [0.95, 0.93]},
                      {"image": "/x/blank.jpg", "polys": [], "scores": []}]}
    reads = _reads_by_name(answer)
    assert reads["faint.jpg"]["box_polys"] == [top]     # det's polygons reach the page
    rows = rank_images(reads)
    assert [r.image for r in rows] == ["blank.jpg", "faint.jpg", "misread.jpg", "easy.jpg"]
    why = {row.image: row.why for row in rows}

    # the reasons: distinct, from each image's own numbers, none "borderline" where nothing is
    assert len(set(why.values())) == len(rows) and why["blank.jpg"] != why["easy.jpg"]
    assert why["blank.jpg"].startswith("no text found")
    assert why["faint.jpg"].startswith("score 0.950 from its weakest box, det score 0.620 against box_thresh 0.60")
    assert "1 of 1 box borderline" in why["faint.jpg"] and "0.930" in why["faint.jpg"]
    assert why["misread.jpg"].startswith(
        "score 0.590 from its least sure read, line 1 “<script>alert(1)</script…” at 0.410")
    assert "1 of 2 reads doubtful" in why["misread.jpg"] and "borderline" not in why["misread.jpg"]
    assert why["easy.jpg"].startswith("nothing doubtful, score 0.175 from its weakest box, det score 0.930")
    assert "borderline" not in why["easy.jpg"] and "doubtful (" not in why["easy.jpg"]
    misread = rows[2]
    assert [(m.text, m.doubtful, m.sets_score) for m in misread.reads] == \
        [(hostile, True, True), ("ok", False, False)]
    assert (misread.doubtful_reads, misread.borderline_boxes, rows[1].borderline_boxes) == (1, 0, 1)

    images = tmp_path / "batch"
    images.mkdir()
    for name in reads:
        Image.new("RGB", (640, 320), "white").save(images / name)
    write_ranking(rows, tmp_path / "out", images, "v1")

    # the pictures: the plain image where nothing is drawn, the model's polygons where its boxes are
    def picture(name):
        with Image.open(tmp_path / "out" / "thumbs" / f"{name}.jpg") as opened:
            return opened.convert("RGB")

    plain = Image.new("RGB", (480, 240), "white")                        # 640x320 at most 480 a side: x 0.75
    for name in ("misread.jpg", "faint.jpg", "easy.jpg"):
        drawn = picture(name)
        assert drawn.size == plain.size
        changed = ImageChops.difference(drawn, plain).convert("L").point(lambda v: 255 if v > 60 else 0)
        left, top, right, bottom = changed.getbbox()
        assert 20 <= left <= 32 and top >= 10 and right <= 305, (name, changed.getbbox())   # the boxes, their numbers
        assert changed.crop((320, 0, 480, 240)).getbbox() is None, name       # and nothing where no box is
    # on the left edge of each box (x 40 -> 30): the doubtful read that sets the score in red, the sure one
    # green, and the borderline box under faint's sure read orange
    assert _colours(picture("misread.jpg"), (26, 50, 38, 70)) == {"white", "red"}
    assert _colours(picture("misread.jpg"), (26, 160, 38, 185)) == {"white", "green"}
    assert {"green", "orange"} <= _colours(picture("faint.jpg"), (26, 50, 38, 70))
    assert _colours(picture("easy.jpg"), (26, 50, 38, 70)) == {"white", "green"}
    assert "blue" in _colours(picture("easy.jpg"), (26, 160, 38, 185))     # easy's weakest box sets its score
    assert picture("blank.jpg").getextrema() == plain.getextrema()        # nothing found: nothing drawn

    # the page: reads beside each picture, the doubtful marked, every upload's text escaped
    page = (tmp_path / "out" / "ranking.html").read_text()
    assert "<script>" not in page and "\u202e" not in page.split("<bdi>", 1)[0]
    assert '<li class="doubtful sets"><bdi>&lt;script&gt;alert(1)&lt;/script&gt;\u202e</bdi> 0.410 doubtful' in page
    assert '<li class="sure"><bdi>ok</bdi> 0.970</li>' in page
    assert "line 1 “&lt;script&gt;alert(1)&lt;/script…” at 0.410" in page     # the reason quotes it, as text
    assert "box b1: det score 0.620 borderline (sets the score)" in page
    assert page.index("<td>faint.jpg</td>") < page.index(why["faint.jpg"]) < page.index("<td>misread.jpg</td>")
    csv_lines = (tmp_path / "out" / "ranking.csv").read_text(encoding="utf-8").splitlines()
    assert csv_lines[0] == ("rank,image,uncertainty,lines,lowest_rec_score,mean_rec_score,weakest_box_score,why,"
                            "doubtful_reads,borderline_boxes")


def test_a_reason_for_every_kind_of_image(tmp_path):
    """Boxes but no read, a det-only model, a turned phone photo: each told and drawn as it is."""
    from PIL import Image

    rows = {row.image: row for row in rank_images({
        "dropped.jpg": {"lines": [], "box_scores": [0.7], "box_polys": [_box(10, 10, 50, 30)]},
        "det_only.jpg": {"lines": [{"poly": _box(10, 10, 50, 30), "text": "", "score": None}], "box_scores": [0.97]},
        "long.jpg": {"lines": [{"poly": _box(10, 10, 50, 30), "text": "x" * 40 + "\n", "score": 0.5}],
                     "box_scores": [0.9]}})}
    assert rows["dropped.jpg"].why == "nothing read: det found 1 box but no line came back read (score 1.000)"
    assert rows["det_only.jpg"].why.startswith("nothing doubtful, score 0.075 from its weakest box, det score 0.970")
    assert "boxes only (the model has no rec)" in rows["det_only.jpg"].why
    assert rows["det_only.jpg"].boxes[0].poly == _box(10, 10, 50, 30) and rows["det_only.jpg"].boxes[0].sets_score
    assert f"“{'x' * 24}…”" in rows["long.jpg"].why and "\n" not in rows["long.jpg"].why

    # PaddleOCR reads a JPEG turned by its EXIF orientation (cv2): the polygons, and so the picture, are turned
    images = tmp_path / "batch"
    images.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6                                                     # turn 90 degrees clockwise
    Image.new("RGB", (200, 100), "white").save(images / "turned.jpg", exif=exif)
    turned = rank_images({"turned.jpg": {"lines": [{"poly": _box(10, 150, 90, 190), "text": "7", "score": 0.5}],
                                         "box_scores": [0.9]}})
    write_ranking(turned, tmp_path / "out", images, "v1")
    with Image.open(tmp_path / "out" / "thumbs" / "turned.jpg.jpg") as drawn:
        assert drawn.size == (100, 200) and drawn.convert("RGB").getpixel((50, 150))[1] < 100   # red, on its box
