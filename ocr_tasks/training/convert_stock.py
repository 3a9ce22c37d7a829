"""A stock PP-OCR inference model (old program format) -> training weights for the configured architecture.

    python convert_stock.py --engine ENGINE_ROOT --model-dir DIR --config TEMPLATE.yml --out OUT.pdparams
                            --data DATA_DIR --task det|rec [--dict DICT] --report REPORT.json

Run by the engine's interpreter (ocr_tasks/training/stock_weights.py starts it through the engine's subprocess
runner); standalone on purpose: paddle and the engine's `ppocr` are imported here, never into the pipeline.

The stock PP-OCRv4/v5 mobile models hold PPLCNetV3 re-parameterised for deployment: each LearnableRepLayer is
one `reparam_conv`. The training architecture has the unfused branches. The fusion is inverted exactly
(docs/design/stock-weights.md, where every number below was measured):
- `conv_kxk[0]` gets the fused kernel, its BatchNorm set to `z -> z + bias` in eval mode;
- the other branches contribute 0 (BN gamma = beta = 0) with fresh kernels, so fine-tuning can grow them;
- the affine after the conv (`lab`) and after hardswish (`act.lab`) are copied as they are.
BN running statistics are calibrated on the dataset's own train images: train-mode BN normalises with batch
statistics, and identity statistics start fine-tuning from a broken network (rec read "" in the prototype).

A dataset dict that extends the stock one (labels with characters the stock model never read) grows the CTC head:
the stock rows are copied where they go, the added characters' rows start as the stock characters' mean row.

Verified before anything is written: the converted training model (eval mode, unfused and fused again as
tools/export_model.py fuses it) and the stock program (run in a child process: paddle 3.x loads old programs only
with the PIR API off, set before paddle is imported) read the same held-out train images; the largest absolute
difference of the det probability map / rec CTC softmax (a grown head: over the stock's classes, renormalised) must be
at most --tolerance (1e-4: the prototype measured 2.3e-5 det, 4.4e-6 rec; a 0.1 % change of one scale gives 5e-2).

Reading the weights needs no static-graph loader: `.pdiparams` is one save_combine stream in the program's
sorted persistable-name order, and `.pdiparams.info` maps each name to the dygraph key.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import yaml

CALIBRATION = {"det": 8, "rec": 16}   # train images / crops whose statistics set the BN running stats
VERIFICATION = {"det": 3, "rec": 6}   # the next ones: read by both models


def _engine(root: str) -> None:
    if root not in sys.path:   # the engine's own tools put their folder on sys.path the same way
        sys.path.insert(0, root)


def build_training_model(cfg: dict):
    """The model as tools/train.py builds it (rec: head sizes from the dict)."""
    from ppocr.modeling.architectures import build_model
    from ppocr.postprocess import build_post_process

    arch = copy.deepcopy(cfg["Architecture"])
    if arch.get("model_type") == "rec":
        classes = len(build_post_process(copy.deepcopy(cfg["PostProcess"]), cfg["Global"]).character)
        if arch["Head"]["name"] == "MultiHead":
            arch["Head"]["out_channels_list"] = {"CTCLabelDecode": classes, "NRTRLabelDecode": classes + 3}
        else:
            arch["Head"]["out_channels"] = classes
    return build_model(arch)


def read_inference_params(model_dir: Path) -> dict[str, np.ndarray]:
    """inference.pdiparams keyed by dygraph name (inference.pdiparams.info)."""
    from paddle.base.proto import framework_pb2 as fpb

    dtypes = {fpb.VarType.FP32: np.float32, fpb.VarType.FP64: np.float64, fpb.VarType.FP16: np.float16,
              fpb.VarType.INT32: np.int32, fpb.VarType.INT64: np.int64}
    program = fpb.ProgramDesc.FromString((model_dir / "inference.pdmodel").read_bytes())
    names = sorted(v.name for v in program.blocks[0].vars if v.persistable and v.name not in ("feed", "fetch"))
    buf = (model_dir / "inference.pdiparams").read_bytes()
    info = pickle.loads((model_dir / "inference.pdiparams.info").read_bytes())
    params, off = {}, 0
    for name in names:
        off += 4                                            # DenseTensor version
        (levels,) = struct.unpack_from("<Q", buf, off)
        off += 8
        for _ in range(levels):
            (size,) = struct.unpack_from("<Q", buf, off)
            off += 8 + size
        off += 4                                            # tensor version
        (desc_len,) = struct.unpack_from("<i", buf, off)
        off += 4
        desc = fpb.VarType.TensorDesc.FromString(buf[off:off + desc_len])
        off += desc_len
        dtype = np.dtype(dtypes[desc.data_type])
        count = int(np.prod(desc.dims)) if len(desc.dims) else 1
        params[info[name]["structured_name"] if name in info else name] = \
            np.frombuffer(buf, dtype=dtype, count=count, offset=off).reshape(tuple(desc.dims)).copy()
        off += count * dtype.itemsize
    if off != len(buf):
        raise ValueError(f"{model_dir / 'inference.pdiparams'}: {len(buf) - off} bytes after the program's "
                         f"{len(names)} tensors (not the program this .pdmodel describes)")
    return params


RENAMES = [(r"^(.*\.(?:dw|pw)_conv)\.w$", r"\1.lab.scale"), (r"^(.*\.(?:dw|pw)_conv)\.b$", r"\1.lab.bias"),
           (r"^(.*\.(?:dw|pw)_conv)\.activation\.(scale|bias)$", r"\1.act.lab.\2")]


def _engine_key(stock_name: str) -> str:
    for pattern, replacement in RENAMES:
        if re.match(pattern, stock_name):
            return re.sub(pattern, replacement, stock_name)
    return stock_name


def _set(tensor, value) -> None:
    value = np.asarray(value)
    if tuple(value.shape) != tuple(tensor.shape):
        raise ValueError(f"shape {tuple(value.shape)} != {tuple(tensor.shape)}")
    tensor.set_value(value.astype(np.float32))


def _identity_bn(bn, bias, mean, var) -> None:
    """z -> z + bias in eval mode; gamma from the same float32 op as rep()'s _fuse_bn_tensor (scale exactly 1)."""
    import paddle

    _set(bn._mean, mean)
    _set(bn._variance, var)
    _set(bn.weight, (paddle.to_tensor(np.asarray(var, np.float32)) + bn._epsilon).sqrt().numpy())
    _set(bn.bias, bias + mean)


def _silent_bn(bn, mean, var) -> None:
    zeros = np.zeros(bn.weight.shape, np.float32)
    _set(bn._mean, mean)
    _set(bn._variance, var)
    _set(bn.weight, zeros)
    _set(bn.bias, zeros)


def _branches(layer):
    yield "conv_kxk.0", layer.conv_kxk[0].bn
    for i, branch in enumerate(list(layer.conv_kxk)[1:], start=1):
        yield f"conv_kxk.{i}", branch.bn
    if layer.conv_1x1 is not None:
        yield "conv_1x1", layer.conv_1x1.bn
    if layer.identity is not None:
        yield "identity", layer.identity


def _branch_stats(model, reps: dict, inputs: list[np.ndarray]) -> dict:
    """Per-channel mean/var of every branch's BN input (one eval pass: setting BN stats keeps the function)."""
    import paddle

    sums: dict[tuple[str, str], list] = {}
    hooks = []

    def collect(key, pre: bool):
        def hook(layer, inputs_, output=None):
            x = (inputs_[0] if pre else output).numpy().astype(np.float64)
            s = sums.setdefault(key, [0.0, 0.0, 0])
            s[0] = s[0] + x.sum(axis=(0, 2, 3))
            s[1] = s[1] + (x * x).sum(axis=(0, 2, 3))
            s[2] += x.shape[0] * x.shape[2] * x.shape[3]
        return hook

    for name, layer in reps.items():
        for i, branch in enumerate(layer.conv_kxk):
            hooks.append(branch.conv.register_forward_post_hook(collect((name, f"conv_kxk.{i}"), False)))
        if layer.conv_1x1 is not None:
            hooks.append(layer.conv_1x1.conv.register_forward_post_hook(collect((name, "conv_1x1"), False)))
        if layer.identity is not None:
            hooks.append(layer.identity.register_forward_pre_hook(collect((name, "identity"), True)))
    with paddle.no_grad():
        for x in inputs:
            model(paddle.to_tensor(x))
    for hook in hooks:
        hook.remove()
    return {k: (s[0] / s[2], np.maximum(s[1] / s[2] - (s[0] / s[2]) ** 2, 0.0)) for k, s in sums.items()}


def convert(model_dir: Path, cfg: dict, calibration: list[np.ndarray]) -> tuple[object, dict]:
    """The unfused training model computing the stock function (eval mode), and what was mapped."""
    import paddle

    state_np = np.random.get_state()
    paddle.seed(0)
    np.random.seed(0)                 # fresh parts (NRTR head, DB threshold branch) the same on every conversion
    try:
        model = build_training_model(cfg)
    finally:
        np.random.set_state(state_np)
    model.eval()
    stock = read_inference_params(model_dir)
    state = model.state_dict()
    reps = {n: layer for n, layer in model.named_sublayers() if hasattr(layer, "rep") and hasattr(layer, "conv_kxk")}
    fused: dict[str, dict[str, np.ndarray]] = {}
    mapped, unused = [], []
    grown = 0
    for name, value in stock.items():
        match = re.match(r"^(.*)\.reparam_conv\.(weight|bias)$", name)
        if match and match.group(1) in reps:
            fused.setdefault(match.group(1), {})[match.group(2)] = value
            continue
        key = _engine_key(name)
        if key in state and tuple(state[key].shape) == tuple(value.shape):
            _set(state[key], value)
            mapped.append(key)
        elif key in state and (columns := _grown_columns(key, value.shape, state[key].shape, cfg)) is not None:
            _set(state[key], _grow(value, columns, state[key].shape))
            mapped.append(key)
            grown = len(columns[1])     # the same for the layer's weight and bias
        else:
            unused.append(f"{name} {list(value.shape)}" + (f" (the architecture has {list(state[key].shape)})"
                                                            if key in state else " (no such key)"))
    if unused:
        hint = ("; the CTC head's size comes from the dict: train with the stock model's dict (validation.dict_file)"
                if any(u.startswith("head.ctc_head.") for u in unused) else "")
        raise ValueError(f"{len(unused)} of the stock model's {len(stock)} tensors do not fit the configured "
                         f"architecture, e.g. {'; '.join(unused[:3])}{hint}")
    if set(fused) != set(reps):
        raise ValueError(f"the configured architecture has re-parameterisable layers the stock model lacks: "
                         f"{sorted(set(reps) - set(fused))[:3]}")
    for name, layer in reps.items():
        kernel, bias = fused[name]["weight"], fused[name]["bias"]
        _set(layer.conv_kxk[0].conv.weight, kernel)
        channels = kernel.shape[0]
        for branch, bn in _branches(layer):
            zeros, ones = np.zeros(channels, np.float32), np.ones(channels, np.float32)
            _identity_bn(bn, bias, zeros, ones) if branch == "conv_kxk.0" else _silent_bn(bn, zeros, ones)
    for (name, branch), (mean, var) in _branch_stats(model, reps, calibration).items():
        bn = dict(_branches(reps[name]))[branch]
        _identity_bn(bn, fused[name]["bias"], mean, var) if branch == "conv_kxk.0" else _silent_bn(bn, mean, var)
    return model, {"stock_tensors": len(stock), "engine_keys": len(state), "copied": len(mapped),
                   "inverted_layers": len(reps), "grown_characters": grown,
                   "fresh": sorted(set(state) - set(mapped) - {k for k in state for n in reps if k.startswith(n + ".")})}


def _grown_columns(key: str, stock_shape, ours_shape, cfg: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """For the CTC head's output layer grown by the dataset's added characters: (where each stock column goes, the
    new columns), else None. CTCLabelDecode's classes are blank, the dict's characters, then space when
    use_space_char: the added characters come after the stock dict's, so space moves to the end."""
    if not key.startswith("head.ctc_head.") or len(stock_shape) != len(ours_shape) \
            or tuple(stock_shape[:-1]) != tuple(ours_shape[:-1]) or ours_shape[-1] <= stock_shape[-1]:
        return None
    theirs, added = stock_shape[-1], ours_shape[-1] - stock_shape[-1]
    kept = np.arange(theirs)
    if cfg.get("Global", {}).get("use_space_char"):
        kept[-1] = theirs - 1 + added
        new = np.arange(theirs - 1, theirs - 1 + added)
    else:
        new = np.arange(theirs, theirs + added)
    return kept, new


def _grow(value: np.ndarray, columns: tuple[np.ndarray, np.ndarray], shape) -> np.ndarray:
    """The stock rows where they go; each new character's row starts as the mean of the stock characters' rows
    (weight and bias; blank and space left out): an average character, which at step 0 takes a share of about one
    in the dict's size where the stock model is sure, and which fine-tuning moves from features the backbone already
    gives (zero weights with the lowest bias took 21 % of a frame where the stock was unsure: measured)."""
    kept, new = columns
    grown = np.zeros(tuple(shape), value.dtype)
    grown[..., kept] = value
    space_moved = kept[-1] != len(kept) - 1          # use_space_char: the stock's last class is space
    characters = value[..., 1:-1] if space_moved else value[..., 1:]
    grown[..., new] = characters.mean(axis=-1, keepdims=True)
    return grown


_STOCK_RUNNER = r"""
import sys, numpy as np, paddle
paddle.enable_static()
exe = paddle.static.Executor(paddle.CPUPlace())
program, feeds, fetches = paddle.static.load_inference_model(sys.argv[1] + "/inference", exe)
data = np.load(sys.argv[2])
np.savez(sys.argv[3], **{k: exe.run(program, feed={feeds[0]: data[k]}, fetch_list=fetches)[0] for k in data.files})
"""


def run_stock(model_dir: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(f"{tmp}/in.npz", **{f"x{i}": x for i, x in enumerate(inputs)})
        done = subprocess.run([sys.executable, "-c", _STOCK_RUNNER, str(model_dir), f"{tmp}/in.npz", f"{tmp}/out.npz"],
                              env=dict(os.environ, FLAGS_enable_pir_api="0", GLOG_minloglevel="2"),
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"the stock program did not run: {done.stderr.strip().splitlines()[-1:]}")
        out = np.load(f"{tmp}/out.npz")
        return [out[f"x{i}"] for i in range(len(inputs))]


def max_differences(model, inputs: list[np.ndarray], expected: list[np.ndarray],
                    stock_columns: np.ndarray | None = None) -> list[float]:
    """Per input, the largest absolute difference from the stock model's output. A grown rec head is compared on
    the stock's classes, renormalised: a softmax restricted to some classes and renormalised is the softmax of their
    logits alone, whatever the added characters' logits are."""
    import paddle

    found = []
    with paddle.no_grad():
        for x, want in zip(inputs, expected):
            got = model(paddle.to_tensor(x))
            got = (got["maps"] if isinstance(got, dict) else got).numpy()
            if stock_columns is not None:
                got = got[..., stock_columns]
                got = got / got.sum(axis=-1, keepdims=True)
            found.append(float(np.abs(got - want).max()))
    return found


def _det_input(path: Path) -> np.ndarray:
    """As the det templates' eval: BGR, long side at most 640, sides multiples of 32, ImageNet mean/std."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    scale = min(1.0, 640 / max(h, w))
    h, w = max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)
    image = cv2.resize(image, (w, h)).astype(np.float32) / 255.0
    image = (image - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    return image.transpose(2, 0, 1)[None].astype(np.float32)


def _rec_input(path: Path, height: int = 48, width: int = 320) -> np.ndarray:
    """As RecResizeImg: height 48, width by aspect up to 320, (x/255 - 0.5)/0.5, right-padded with 0."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    resized = min(width, int(np.ceil(height * w / h)))
    image = cv2.resize(image, (resized, height)).astype(np.float32) / 255.0
    padded = np.zeros((height, width, 3), np.float32)
    padded[:, :resized] = (image - 0.5) / 0.5
    return padded.transpose(2, 0, 1)[None]


def dataset_inputs(data_dir: Path, task: str, count: int) -> list[np.ndarray]:
    """The first `count` train images (det) or crops (rec) of the dataset, pre-processed as training reads them."""
    lines = (data_dir / task / "train.txt").read_text(encoding="utf-8").splitlines()
    paths = [data_dir / line.split("\t", 1)[0] for line in lines if line.strip()][:count]
    if len(paths) < count:
        raise ValueError(f"{data_dir / task / 'train.txt'}: {len(paths)} samples, the conversion needs {count}")
    return [(_det_input if task == "det" else _rec_input)(path) for path in paths]


def _largest_share(model, inputs: list[np.ndarray], columns: np.ndarray) -> float:
    """The most probability the added characters get at any position of `inputs` (near 0: they start quiet)."""
    import paddle

    with paddle.no_grad():
        return max(float(model(paddle.to_tensor(x)).numpy()[..., columns].sum(axis=-1).max()) for x in inputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--engine", "--model-dir", "--config", "--out", "--data", "--report"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--task", choices=("det", "rec"), required=True)
    parser.add_argument("--dict", help="rec: the character dict training uses (Global.character_dict_path)")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    _engine(args.engine)
    import paddle

    cfg = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    if args.dict:
        cfg.setdefault("Global", {})["character_dict_path"] = args.dict
    model_dir, data_dir = Path(args.model_dir), Path(args.data)
    samples = dataset_inputs(data_dir, args.task, CALIBRATION[args.task] + VERIFICATION[args.task])
    report: dict = {"task": args.task, "tolerance": args.tolerance}
    try:
        model, mapping = convert(model_dir, cfg, samples[:CALIBRATION[args.task]])
        report.update(mapping)
        held_out = samples[CALIBRATION[args.task]:]
        expected = run_stock(model_dir, held_out)
        columns = None
        if mapping["grown_characters"]:
            classes = expected[0].shape[-1]
            columns, added = _grown_columns("head.ctc_head.fc.bias", (classes,),
                                            (classes + mapping["grown_characters"],), cfg)
            report["added_characters_max_probability"] = _largest_share(model, held_out, added)
        report["max_abs_difference"] = max_differences(model, held_out, expected, columns)
        # and fused back as tools/export_model.py fuses before saving (on a copy: training needs the branches)
        fused = copy.deepcopy(model)
        for layer in fused.sublayers():
            if hasattr(layer, "rep") and not getattr(layer, "is_repped", False):
                layer.rep()
        report["max_abs_difference_fused"] = max_differences(fused, held_out, expected, columns)
        report["max_abs_difference"] = [max(a, b) for a, b in zip(report["max_abs_difference"],
                                                                   report["max_abs_difference_fused"])]
    except (ValueError, RuntimeError) as exc:
        report["error"] = str(exc)
    if "error" not in report and max(report["max_abs_difference"]) > args.tolerance:
        report["error"] = (f"the converted weights read {max(report['max_abs_difference']):.2e} away from the stock "
                           f"model (at most {args.tolerance:.0e} allowed)")
    Path(args.report).write_text(json.dumps(report, indent=1), encoding="utf-8")
    if "error" in report:
        print(f"conversion refused: {report['error']}", file=sys.stderr)
        return 3
    paddle.save(model.state_dict(), args.out)
    print(f"converted {model_dir} -> {args.out}: {mapping['copied']} tensors copied, {mapping['inverted_layers']} "
          f"re-parameterised layers inverted, {len(mapping['fresh'])} keys fresh, the head grown by "
          f"{mapping['grown_characters']} characters; max abs difference from the stock model "
          f"{max(report['max_abs_difference']):.2e} on {VERIFICATION[args.task]} train samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
