"""Recognition crops cut from detection polygons, the way PPOCRLabel cuts them."""

from __future__ import annotations

import cv2
import numpy as np

JPEG_QUALITY = 95


def crop_text_region(image: np.ndarray, points: list[list[float]]) -> np.ndarray:
    """Perspective crop of a text polygon (PPOCRLabel's get_rotate_crop_image).

    Quads are used as labelled (first point top-left, clockwise); other polygons by
    their minimum-area rectangle. Tall crops are turned upright (vertical text).
    """
    quad = np.array(points, dtype=np.float32)
    if len(quad) != 4:
        quad = _ordered_box(cv2.boxPoints(cv2.minAreaRect(quad)))
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    matrix = cv2.getPerspectiveTransform(quad, target)
    crop = cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if crop.shape[0] / crop.shape[1] >= 1.5:
        crop = np.rot90(crop)
    return crop


def encode_jpeg(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("could not encode crop as JPEG")
    return buffer.tobytes()


def _ordered_box(box: np.ndarray) -> np.ndarray:
    by_x = box[np.argsort(box[:, 0])]
    left, right = by_x[:2], by_x[2:]
    top_left, bottom_left = left[np.argsort(left[:, 1])]
    top_right, bottom_right = right[np.argsort(right[:, 1])]
    return np.array([top_left, top_right, bottom_right, bottom_left], dtype=np.float32)
