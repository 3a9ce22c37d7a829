"""Stock inference model vs the model the engine's tools/export_model.py exported from the converted weights."""
import sys, time, numpy as np, paddle
from pathlib import Path
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import convert as C
from run_checks import det_image, rec_image, MODELS
rng = np.random.default_rng(7)
for kind, shape in (("det", (1, 3, 640, 640)), ("rec", (1, 3, 48, 320))):
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]
    xs.append(det_image(rng) if kind == "det" else rec_image("Exported 2026 ok", rng))
    ref = C.run_stock(MODELS[kind], xs)
    t = time.perf_counter()
    m = paddle.jit.load(str(HERE / "out" / f"export_{kind}" / "inference"))
    m.eval()
    with paddle.no_grad():
        outs = [m(paddle.to_tensor(x)) for x in xs]
    outs = [(o[0] if isinstance(o, (list, tuple)) else o).numpy() for o in outs]
    print(kind, "exported vs stock max abs:", [float(np.abs(o - r).max()) for o, r in zip(outs, ref)],
          "s", round(time.perf_counter() - t, 1))
