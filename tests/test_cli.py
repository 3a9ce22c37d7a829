"""`ocr-retrain`'s errors: what the user can fix is one line and exit 2; a bug shows its traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ocr_tasks.cli import main
from ocr_tasks.errors import StorageError


@pytest.mark.parametrize("argv, says", [
    (["demo", "--epochs", "0"], "--epochs must be >= 1"),
    (["ui", "--images", "5"], "--images must be >= 20"),
    (["prelabel", "s3:/bucket/unlabeled/b/"], "not an S3 URI"),
    (["prelabel", "--model-version", "../v1"], "invalid model version '../v1'"),   # before any storage call
    (["pull-dataset", "../v1", "--dest", "unused"], "invalid dataset version '../v1'"),
])
def test_a_usage_error_is_one_line_and_exit_2(argv, says, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ocr-retrain: error: {says}") and err.count("\n") == 1


def test_a_storage_failure_is_one_line_and_exit_2(monkeypatch, capsys):
    def unreachable(*args, **kwargs):
        raise StorageError("S3 ListObjectsV2 s3://b/ failed after 7 attempts: endpoint http://127.0.0.1:9 unreachable")

    monkeypatch.setattr("ocr_tasks.embedded.s3server.serve", unreachable)
    assert main(["storage", "serve", "--port", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ocr-retrain: error: S3 ListObjectsV2") and "Traceback" not in err


@pytest.mark.parametrize("bug", ["ValueError", "KeyError"])
def test_an_unexpected_exception_shows_its_traceback(bug):
    """As the console script runs it (`sys.exit(main())`), with a command's function raising what no user causes."""
    script = textwrap.dedent(f"""
        import sys
        import ocr_tasks.embedded.s3server as s3server
        from ocr_tasks.cli import main

        def broken(*args, **kwargs):
            raise {bug}("a bug, not a usage error")

        s3server.serve = broken
        sys.exit(main(["storage", "serve", "--port", "9"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode not in (0, 2), done.stderr
    assert "Traceback (most recent call last)" in done.stderr and f"{bug}: " in done.stderr
    assert "in broken" in done.stderr and "ocr-retrain: error" not in done.stderr


def test_read_checks_its_image_before_loading_any_model(tmp_path, capsys):
    """Issue 29: a text file, a text file named .jpg, a truncated JPEG and a missing file are named, with what is
    wrong, before a model is pulled or loaded (--model names a folder that holds none: nothing gets that far)."""
    from ocr_tasks.embedded.synthetic import make_text_line_image
    from ocr_tasks.ingest.crops import encode_jpeg

    renamed = tmp_path / "notes.jpg"
    renamed.write_text("not a photo")
    truncated = tmp_path / "cut.jpg"
    whole = encode_jpeg(make_text_line_image("20261", height=40, rng=0))
    truncated.write_bytes(whole[:len(whole) * 2 // 3])                 # an interrupted copy: header whole, data cut
    for image, says in ((tmp_path / "README.md", "not a readable image"), (renamed, "not a readable image"),
                        (truncated, "file is truncated"), (tmp_path / "gone.jpg", "image file missing")):
        if image.name == "README.md":
            image.write_text("# a README")
        assert main(["read", "--model", str(tmp_path / "no-model"), str(image)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ocr-retrain: error: {image}: {says}") and "nothing read" in err, err
        assert err.count("\n") == 1


def test_an_endpoint_without_a_scheme_says_which_setting_and_how(monkeypatch, capsys):
    monkeypatch.setenv("OCR_RETRAIN_S3_ENDPOINT", "127.0.0.1:9000")
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ocr-retrain: error: S3 endpoint '127.0.0.1:9000' (OCR_RETRAIN_S3_ENDPOINT") and \
        "must be an http:// or https:// URL, e.g. http://127.0.0.1:9000" in err, err


@pytest.mark.parametrize("serves_a_page", [False, True])
def test_an_endpoint_that_is_not_s3_is_said_to_be_so(serves_a_page, tmp_path, monkeypatch, capsys):
    """A web server given as the endpoint: its bare 404 must not read as an empty bucket, nor its HTML page as a
    corrupt production.json (issue 29)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    if serves_a_page:
        page = tmp_path / "ocr-data" / "models" / "ocr" / "production.json"
        page.parent.mkdir(parents=True)
        page.write_text("<!DOCTYPE html><html><body>Welcome</body></html>")
    quiet = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *args: None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OCR_RETRAIN_S3_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
        assert main(["models"]) == 2
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    said = "is not JSON but a web page" if serves_a_page else "answered HTTP 404 without an S3 error"
    assert said in err and "it does not look like an S3 server (check OCR_RETRAIN_S3_ENDPOINT" in err, err


@pytest.mark.parametrize("command", ["demo", "ui"])
@pytest.mark.parametrize("item, says", [
    ("gate.rec_min_ac=0.5", "--set gate.rec_min_ac=0.5: unknown config key gate.rec_min_ac (known: "),
    ("gate.rec_min_acc=1.5", "--set gate.rec_min_acc=1.5: gate.rec_min_acc: must be between 0 and 1, got 1.5"),
])
def test_a_bad_set_for_the_demo_names_the_flag_and_writes_nothing(command, item, says, tmp_path, capsys):
    """Issue 29: a typo in --set was blamed on work/demo/pipeline.yaml, after the demo had uploaded its exports."""
    work = tmp_path / "demo"
    assert main(["--set", item, command, "--work-dir", str(work)]) == 2
    err = capsys.readouterr().err
    assert says in err and "pipeline.yaml" not in err
    assert not work.exists()
