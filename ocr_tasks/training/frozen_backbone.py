"""Entry point that runs PaddleOCR's tools/train.py with the backbone frozen.

PaddleOCR 2.10 configs have no generic "freeze the backbone" key, so the pipeline runs
this file instead of tools/train.py for a stage with `freeze_backbone: true`:

    python frozen_backbone.py <engine>/tools/train.py -c config.yml -o ...

It patches `build_model` so every backbone parameter stops receiving gradients, then
runs the engine's own train.py unchanged (so its logs, checkpoints and resume behave as
always). Batch-norm running statistics of the backbone still update in train mode.
Standalone on purpose: it is executed by the engine's interpreter, not imported.
"""

import runpy
import sys
from pathlib import Path


def main() -> None:
    train_script = Path(sys.argv[1]).resolve()
    engine_root = train_script.parent.parent
    sys.path[:0] = [str(train_script.parent), str(engine_root)]  # as tools/train.py sets them
    import ppocr.modeling.architectures as architectures

    build_model = architectures.build_model

    def build_frozen(config, *args, **kwargs):
        model = build_model(config, *args, **kwargs)
        backbone = getattr(model, "backbone", None)
        if backbone is None:
            raise SystemExit("freeze_backbone: this architecture has no backbone to freeze")
        frozen = 0
        for parameter in backbone.parameters():
            parameter.stop_gradient = True
            frozen += 1
        print(f"[frozen_backbone] ppocr INFO: froze {frozen} backbone parameters", flush=True)
        return model

    architectures.build_model = build_frozen
    sys.argv = [str(train_script), *sys.argv[2:]]
    runpy.run_path(str(train_script), run_name="__main__")


if __name__ == "__main__":
    main()
