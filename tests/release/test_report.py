from ocr_tasks.release.report import plot_curves, write_summary


def test_curves_and_summary_are_written(tmp_path):
    history = [{"kind": "train", "global_step": s, "loss": 10 / s, "loss_ctc": 9 / s, "acc": s / 100} for s in range(1, 60)]
    history += [{"kind": "eval", "global_step": 50, "acc": 0.8, "norm_edit_dis": 0.9}]
    png = plot_curves("rec", history, tmp_path / "rec_curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_curves("det", [], tmp_path / "det.png") is None
    gate = {"passed": False, "reasons": ["rec acc 0.874 is not > 0.9"],
            "checks": [{"model": "rec", "metric": "acc", "value": 0.874, "op": ">", "threshold": 0.9, "passed": False}]}
    page = write_summary(tmp_path / "summary.html", title="run <1>", facts={"dataset": "abc"},
                         metrics={"rec": {"acc": 0.874}}, baseline={"rec": {"acc": 0.91}}, gate=gate,
                         curves=["rec_curves.png"],
                         data={"quarantined": {"digits_broken": "s3://b/quarantine/digits_broken/6c80/"},
                               "left_out": {"digits_800": {"images": 1, "report": "s3://b/quarantine/digits_800/91aa/"}}},
                         ).read_text()
    assert "FAILED: not published" in page and "rec acc 0.874 is not &gt; 0.9" in page
    # the exports this run did not take whole, and where to see why
    assert "digits_broken: refused whole (quarantined); why: s3://b/quarantine/digits_broken/6c80/" in page
    assert "digits_800: merged without 1 image; which and why: s3://b/quarantine/digits_800/91aa/" in page
    assert "0.9100" in page and "run &lt;1&gt;" in page and 'src="rec_curves.png"' in page


def test_names_from_uploads_are_text_in_the_report(tmp_path):
    hostile = '<img src=x onerror="alert(1)">'
    gate = {"passed": True, "reasons": [hostile], "checks": [{"model": "det", "metric": "hmean", "slice": f"export={hostile}",
                                                              "value": 0.9, "op": ">=", "threshold": 0.5, "passed": True}]}
    errors = {"rec_total": 1, "rec_wrong": 1, "confusions": [{"label": "<", "read": "∅", "count": 1}],
              "rec": [{"picture": "errors/rec_00.jpg", "label": hostile, "new": "</td>", "new_score": 0.5,
                       "production": None, "production_score": None, "export": hostile}]}
    comparison = {"production_version": "v1", "notes": [hostile],
                  "slices": {"det": {f"export={hostile}": {"samples": 30, "new": {"hmean": 0.5}, "production": {"hmean": 0.9}}}}}
    exported = {"newest": {"error": {"type": "OSError", "message": hostile}}}
    page = write_summary(tmp_path / "summary.html", title="t", facts={"exports": hostile}, metrics={}, baseline=None,
                         gate=gate, curves=["rec curves#1.png"], exported=exported, comparison=comparison,
                         errors=errors, data={"left_out": {hostile: {"images": 2, "report": None}}}).read_text()
    assert "<img src=x" not in page and "<td class=\"bad\">&lt;/td&gt; (0.5000)</td>" in page
    assert page.count("&lt;img src=x onerror=&#34;alert(1)&#34;&gt;") == 9   # facts, left out, reason, check, slice, note, runtime, label, export
    assert '<tr class="bad"><td>det</td><td>export=&lt;img' in page       # the slice dropped 0.4
    assert 'src="rec%20curves%231.png"' in page and 'src="errors/rec_00.jpg"' in page
