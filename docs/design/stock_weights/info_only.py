"""Names listed in .pdiparams.info but absent from the .pdiparams (pruned from the inference program)."""
import pickle, re, sys, collections
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert as C
from run_checks import MODELS
for kind, d in MODELS.items():
    info = pickle.loads((d / "inference.pdiparams.info").read_bytes())
    have = set(C.read_inference_params(d))
    gone = [v["structured_name"] for v in info.values() if v["structured_name"] not in have]
    pat = collections.Counter(re.sub(r"\d+", "N", n) for n in gone)
    print(kind, len(info), "in .info,", len(have), "in .pdiparams,", len(gone), "absent:")
    for p, c in sorted(pat.items()): print(f"   {c:3d}  {p}")
