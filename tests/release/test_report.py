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
                         curves=["rec_curves.png"]).read_text()
    assert "FAILED: not published" in page and "rec acc 0.874 is not &gt; 0.9" in page
    assert "0.9100" in page and "run &lt;1&gt;" in page and 'src="rec_curves.png"' in page
