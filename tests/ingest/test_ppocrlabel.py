from ocr_tasks.ingest.ppocrlabel import export_relpath, parse_file_state, parse_label_file, parse_rec_gt, polygon_area


def test_label_lines_parse_with_bom_crlf_and_backslashes():
    data = ('\ufeffbatch\\img_1.jpg\t[{"transcription": "12", "points": [[0,0],[4,0],[4,2],[0,2]], "difficult": false}]\r\n'
            '\r\n'
            'renamed/img_2.jpg\t[]\r\n').encode("utf-8")
    first, second = parse_label_file(data)
    assert (first.line_no, first.relpath, first.problem) == (1, "img_1.jpg", None)
    assert first.boxes[0].transcription == "12" and first.boxes[0].points[2] == [4, 2]
    assert (second.line_no, second.relpath, second.boxes) == (3, "img_2.jpg", [])


def test_broken_label_lines_say_what_is_wrong_with_line_numbers():
    data = ("b/a.jpg no tab here\n"
            "b/b.jpg\t[{bad json\n"
            "/etc/c.jpg\t[]\n"
            "b/../../d.jpg\t[]\n"
            'b/e.jpg\t[{"transcription": 5, "points": []}]\n'
            'b/f.jpg\t[{"transcription": "x", "points": [[1, "y"]]}]\n').encode() + b"b/g.jpg\t\xff\xfe\n"
    problems = {line.line_no: line.problem for line in parse_label_file(data)}
    assert "no tab" in problems[1]
    assert "not valid JSON" in problems[2]
    assert "absolute path" in problems[3]
    assert "'..'" in problems[4]
    assert "transcription" in problems[5]
    assert "points" in problems[6]
    assert "UTF-8" in problems[7]


def test_windows_drive_paths_are_unsafe():
    (line,) = parse_label_file(b"C:\\data\\x.jpg\t[]\n")
    assert "absolute" in line.problem


def test_file_state_matches_by_file_name_only():
    data = b"C:\\Users\\ann\\batch\\img_1.jpg\t1\r\n/home/bob/batch/img_2.jpg\t1\nD:\\x\\img_3.jpg\t0\n"
    assert parse_file_state(data) == {"img_1.jpg", "img_2.jpg"}


def test_rec_gt_names_give_source_image_and_box():
    (ok, bad) = parse_rec_gt(b"crop_img/img_7_crop_3.jpg\t123\ncrop_img/weird.jpg\t4\n")
    assert (ok.source_stem, ok.box_index, ok.text, ok.problem) == ("img_7", 3, "123", None)
    assert "not '<image stem>_crop_<n>" in bad.problem


def test_export_relpath_drops_the_folder_segment():
    assert export_relpath("any_name/img.jpg") == "img.jpg"
    assert export_relpath("img.jpg") == "img.jpg"


def test_polygon_area():
    assert polygon_area([[0, 0], [4, 0], [4, 2], [0, 2]]) == 8
    assert polygon_area([[0, 0], [4, 0], [8, 0], [2, 0]]) == 0
