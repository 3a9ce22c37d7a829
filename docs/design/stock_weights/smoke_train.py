"""Smoke check: the engine's own pretrained loader takes the converted .pdparams; gradients reach the branches."""
import sys, time, numpy as np, paddle
from pathlib import Path
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import convert as C
from run_checks import det_image, CFG
C._import_engine()
from ppocr.utils.save_load import load_pretrained_params
m = C.build_training_model(C.load_config(CFG["det"]))
t = time.perf_counter()
load_pretrained_params(m, str(HERE / "out" / "PP-OCRv4_mobile_det_calibrated.pdparams"))
print("load_pretrained_params s", round(time.perf_counter() - t, 2))
m.train()
rng = np.random.default_rng(5)
x = paddle.to_tensor(np.concatenate([det_image(rng, 320, 320) for _ in range(2)]))
y = m(x)["maps"]
print("train-mode output", y.shape)
(y[:, 0].mean() + y[:, 1].mean()).backward()
g = lambda k: float(np.abs(dict(m.named_parameters())[k].grad.numpy()).max()) if dict(m.named_parameters())[k].grad is not None else None
for k in ["backbone.blocks3.1.dw_conv.conv_kxk.0.conv.weight", "backbone.blocks3.1.dw_conv.conv_kxk.1.bn.weight",
          "backbone.blocks3.1.dw_conv.conv_kxk.1.conv.weight", "backbone.blocks3.1.dw_conv.conv_1x1.bn.weight",
          "backbone.blocks3.1.dw_conv.identity.weight", "backbone.blocks3.1.dw_conv.lab.scale", "head.thresh.conv1.weight"]:
    print(k, "max|grad| =", g(k))
