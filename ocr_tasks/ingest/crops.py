"""Recognition crops cut from detection polygons, the way PPOCRLabel cuts them.

One implementation for the pipeline (crops re-cut from polygons) and for synthetic
exports (PPOCRLabel's "Export Recognition Result"), so the two cannot drift apart.
"""

from __future__ import annotations

import cv2
import numpy as np

JPEG_QUALITY = 95


def crop_text_region(image: np.ndarray, points) -> np.ndarray:
    """Perspective crop of a text polygon (PPOCRLabel's ``libs/utils.get_rotate_crop_image``).

    Quads are put in order first (``order_quad``), so a box gives the same upright crop
    whichever corner the labeller clicked first and in whichever direction; other
    polygons are cropped by their minimum-area rectangle (PPOCRLabel's
    ``gen_quad_from_poly``). The rest are PPOCRLabel's steps: INTER_CUBIC,
    BORDER_REPLICATE, and crops at least 1.5x taller than wide turned a quarter
    counter-clockwise (vertical text).
    """
    quad = np.asarray(points, dtype=np.float32)
    if len(quad) != 4:
        quad = cv2.boxPoints(cv2.minAreaRect(quad))
    quad = order_quad(quad)
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    matrix = cv2.getPerspectiveTransform(quad, target)
    crop = cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if crop.shape[0] / crop.shape[1] >= 1.5:
        crop = np.rot90(crop)
    return crop


def order_quad(points) -> np.ndarray:
    """The four points clockwise on screen, starting at the top-left.

    Clockwise: PPOCRLabel's Green's-formula test (a counter-clockwise box has points 1
    and 3 swapped), so a box clicked the other way round is never cropped mirrored.
    Top-left: the upper of the two leftmost points, as PaddleOCR orders a box before
    cropping (``tools/infer/utility.get_minarea_rect_crop``); PPOCRLabel keeps the
    first click as the top-left, so a box started at another corner would come out
    turned. For a text line steeper than its own diagonal the top-left is ambiguous and
    this picks the geometric one.
    """
    quad = np.array(points, dtype=np.float32).reshape(4, 2)
    x, y = quad[:, 0], quad[:, 1]
    # Shoelace sum in image coordinates (y down): negative means counter-clockwise on screen.
    if float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) < 0:
        quad = quad[[0, 3, 2, 1]]
    first, second = (int(i) for i in np.argsort(quad[:, 0], kind="stable")[:2])
    # Clockwise, the left edge runs upward: the top-left follows the other leftmost point.
    if (first + 1) % 4 == second:
        start = second
    elif (second + 1) % 4 == first:
        start = first
    else:  # the two leftmost points are opposite corners (not a convex quad): take the upper
        start = first if quad[first, 1] <= quad[second, 1] else second
    return np.roll(quad, -start, axis=0)


def encode_jpeg(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("could not encode crop as JPEG")
    return buffer.tobytes()
