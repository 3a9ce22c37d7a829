"""Rec crops cut from polygons: upright whatever corner the labeller clicked first and in whichever direction."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ocr_tasks.ingest.crops import crop_text_region, order_quad

TL, TR, BR, BL = [60, 40], [260, 40], [260, 100], [60, 100]   # a 200x60 text region

# every way to click the four corners around the box: each start, clockwise and counter-clockwise
CLICK_ORDERS = {
    "clockwise from top-left": [TL, TR, BR, BL],
    "counter-clockwise from top-left": [TL, BL, BR, TR],
    "clockwise from top-right": [TR, BR, BL, TL],
    "counter-clockwise from top-right": [TR, TL, BL, BR],
    "clockwise from bottom-right (PPOCRLabel rect dragged up-left)": [BR, BL, TL, TR],
    "counter-clockwise from bottom-right": [BR, TR, TL, BL],
    "clockwise from bottom-left": [BL, TL, TR, BR],
    "counter-clockwise from bottom-left (PPOCRLabel rect dragged down-left)": [BL, BR, TR, TL],
}


def page() -> np.ndarray:
    """White page; inside the text region a dark bar fills the top of the left half."""
    image = np.full((160, 320, 3), 255, np.uint8)
    image[40:70, 60:160] = 0
    return image


def assert_upright(crop: np.ndarray) -> None:
    h, w = crop.shape[:2]
    assert (h, w) == (60, 200)
    quadrants = {
        "top-left": crop[: h // 2, : w // 2], "top-right": crop[: h // 2, w // 2:],
        "bottom-left": crop[h // 2:, : w // 2], "bottom-right": crop[h // 2:, w // 2:],
    }
    means = {name: float(q.mean()) for name, q in quadrants.items()}
    assert means["top-left"] < 40, means                                          # the bar stays top-left
    assert min(means["top-right"], means["bottom-left"], means["bottom-right"]) > 215, means


def test_clockwise_and_counter_clockwise_clicks_give_the_same_upright_crop():
    image = page()
    clockwise = crop_text_region(image, [TL, TR, BR, BL])
    counter = crop_text_region(image, [TL, BL, BR, TR])
    assert np.array_equal(clockwise, counter)
    assert_upright(clockwise)
    assert_upright(counter)


@pytest.mark.parametrize("order", list(CLICK_ORDERS))
def test_any_click_order_gives_the_same_upright_crop(order):
    image = page()
    crop = crop_text_region(image, CLICK_ORDERS[order])
    assert np.array_equal(crop, crop_text_region(image, [TL, TR, BR, BL]))
    assert_upright(crop)


@pytest.mark.parametrize("angle", [-30.0, -10.0, 10.0, 30.0])
def test_rotated_box_any_click_order_same_crop(angle):
    """A tilted text line: every click order names the same quad, clockwise from its top-left."""
    rotation = cv2.getRotationMatrix2D((160.0, 80.0), angle, 1.0)
    rotated = [[float(x), float(y)] for x, y in np.array([TL, TR, BR, BL], np.float64) @ rotation[:, :2].T + rotation[:, 2]]
    expected = order_quad(rotated)
    assert np.allclose(expected, rotated)        # labelled clockwise from its top-left: kept as it is
    for points in CLICK_ORDERS.values():
        corners = [rotated[[TL, TR, BR, BL].index(p)] for p in points]
        assert np.allclose(order_quad(corners), expected)


def test_tall_box_is_turned_a_quarter_like_ppocrlabel():
    image = np.full((300, 200, 3), 255, np.uint8)
    image[50:100, 80:110] = 0                      # top-left of a 60 wide, 180 tall region
    box = [[80, 50], [140, 50], [140, 230], [80, 230]]
    crop = crop_text_region(image, box)
    assert crop.shape[:2] == (60, 180)
    assert np.array_equal(crop, crop_text_region(image, box[::-1]))
    # np.rot90 turns counter-clockwise: the region's top-left lands bottom-left
    assert crop[30:, :50].mean() < 40 and crop[:30, :].mean() > 215


def test_polygon_is_cropped_by_its_minimum_area_rectangle_upright():
    image = page()
    polygon = [TL, [160, 40], TR, BR, [160, 100], BL]
    assert_upright(crop_text_region(image, polygon))
    assert_upright(crop_text_region(image, polygon[::-1]))
