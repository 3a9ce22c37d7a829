"""Train/val/test assignment by content hash.

An image's split depends only on its bytes and the ratios, never on what else is in
the dataset, so it cannot move from train to test as exports accumulate night after
night (PPOCRLabel's own script re-shuffles everything and leaks test images).
Changing the ratios does move images: do that only with a fresh baseline.
"""

from __future__ import annotations

from ocr_tasks.config import SplitConfig
from ocr_tasks.vocabulary import SPLITS

_TRAIN, _VAL, _TEST = SPLITS
_SCALE = 1 << 32


def assign_split(sha256: str, ratios: SplitConfig) -> str:
    position = int(sha256[:8], 16) / _SCALE  # uniform in [0, 1) for a cryptographic hash
    if position < ratios.train:
        return _TRAIN
    if position < ratios.train + ratios.val:
        return _VAL
    return _TEST
