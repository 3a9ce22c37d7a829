import tarfile

from ocr_tasks.ingest.packs import extract_pack, write_pack


def test_packs_are_deterministic_and_extract_only_what_is_asked(tmp_path):
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    for name in ("b.jpg", "a.jpg"):
        (root / "images" / name).write_bytes(name.encode() * 100)
    first = write_pack(root, ["images/b.jpg", "images/a.jpg"], tmp_path / "1.tar")
    (root / "images" / "a.jpg").touch()  # a newer mtime must not change the pack
    assert write_pack(root, ["images/a.jpg", "images/b.jpg"], tmp_path / "2.tar") == first

    # a pack naming paths outside the destination is not followed
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        tar.add(root / "images" / "a.jpg", arcname="../escape.jpg")
        tar.add(root / "images" / "b.jpg", arcname="images/b.jpg")
    dest = tmp_path / "dest"
    assert extract_pack(tmp_path / "evil.tar", {"images/b.jpg"}, dest) == 1
    assert (dest / "images" / "b.jpg").read_bytes() == b"b.jpg" * 100
    assert not (tmp_path / "escape.jpg").exists()
