"""Entry point that runs PaddleOCR's tools/export_model.py so that every PaddleOCR 3.x runtime can run its output.

    python portable_export.py <engine>/tools/export_model.py -c config.yml -o ...

Why: paddle 3.3.x declares the `scale` of interpolation ops as a double array, and its
oneDNN kernels (on by default on CPU in every PaddleOCR 3.x) cannot convert that
attribute (Paddle issue #77340, fixed upstream in no release): a DB detector, whose FPN
neck upsamples with `F.upsample(scale_factor=2|4|8, mode="nearest")`, crashes there at
its first image. Nearest upsampling by a power of two is a pure copy (output pixel
(h, w) is input pixel (h // k, w // k)), so it is written here with shape ops instead:
unsqueeze, expand, flatten. The exported program then has no interpolation op, and its
outputs are bit-identical to the original op's (tests/training/test_portable_export.py).
Every other interpolation (bilinear, a given output size, other factors) is left as
paddle writes it.

The engine's own export_model.py then runs unchanged. Standalone on purpose: it is
executed by the engine's interpreter, not imported by the pipeline.
"""

import runpy
import sys
from pathlib import Path


def _power_of_two(scale_factor):
    """k when every axis of `scale_factor` is the same power of two >= 2, else None."""
    factors = scale_factor if isinstance(scale_factor, (list, tuple)) else [scale_factor]
    try:
        values = {float(f) for f in factors}
    except (TypeError, ValueError):   # a tensor: the factor is only known at run time
        return None
    if len(values) != 1:
        return None
    (value,) = values
    k = int(value)
    return k if k == value and k >= 2 and k & (k - 1) == 0 else None


def _nearest_by_copy(x, k):
    """[N, C, H, W] -> [N, C, H*k, W*k], each input pixel repeated k x k times."""
    import paddle

    tiled = paddle.expand(paddle.unsqueeze(x, [3, 5]), [-1, -1, -1, k, -1, k])  # N C H k W k
    return paddle.flatten(paddle.flatten(tiled, 4, 5), 2, 3)


def portable(resize):
    """`resize` (paddle's upsample or interpolate) with power-of-two nearest upsampling written as a copy."""

    def wrapped(x, size=None, scale_factor=None, mode="nearest", align_corners=False, *args, **kwargs):
        data_format = kwargs.get("data_format", args[1] if len(args) > 1 else None)
        k = _power_of_two(scale_factor) if size is None else None
        if (k and str(mode).lower() == "nearest" and not align_corners and data_format in (None, "NCHW")
                and len(x.shape) == 4):
            return _nearest_by_copy(x, k)
        return resize(x, size, scale_factor, mode, align_corners, *args, **kwargs)

    wrapped.__name__ = getattr(resize, "__name__", "interpolate")
    wrapped.__doc__ = resize.__doc__
    return wrapped


def main() -> None:
    export_script = Path(sys.argv[1]).resolve()
    import paddle.nn.functional as F

    # module attributes: the necks call F.upsample / F.interpolate, nn.Upsample calls F.interpolate
    F.upsample = portable(F.upsample)
    F.interpolate = portable(F.interpolate)
    sys.argv = [str(export_script), *sys.argv[2:]]
    runpy.run_path(str(export_script), run_name="__main__")


if __name__ == "__main__":
    main()
