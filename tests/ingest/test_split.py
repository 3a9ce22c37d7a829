import hashlib
from collections import Counter

from ocr_tasks.config import SplitConfig
from ocr_tasks.ingest.split import assign_split


def test_split_is_stable_and_close_to_ratios():
    ratios = SplitConfig()
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20000)]
    first = [assign_split(h, ratios) for h in hashes]
    counts = Counter(first)
    assert abs(counts["train"] / 20000 - 0.6) < 0.02
    assert abs(counts["val"] / 20000 - 0.2) < 0.02
    assert abs(counts["test"] / 20000 - 0.2) < 0.02
    # growing the dataset never moves an existing image
    assert [assign_split(h, ratios) for h in hashes[:500]] == first[:500]


def test_ratios_are_configurable():
    only_train = SplitConfig(train=1.0, val=0.0, test=0.0)
    assert {assign_split(hashlib.sha256(bytes([i])).hexdigest(), only_train) for i in range(200)} == {"train"}
