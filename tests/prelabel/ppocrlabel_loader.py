"""Run in PPOCRLabel's own environment (.venv-ppocrlabel): open a folder the way PPOCRLabel 3.1.6's
importDirImages does, with its own MainWindow methods (no window is built), and print, per image it lists,
whether it counts as confirmed and the boxes it would show.

    .venv-ppocrlabel/bin/python tests/prelabel/ppocrlabel_loader.py <folder>
"""

import json
import os
import sys
import types

from PPOCRLabel import PPOCRLabel as app

window = app.MainWindow
switch = types.SimpleNamespace(setEnabled=lambda on: None)
shim = types.SimpleNamespace(img_list_natural_sort=True,
                             actions=types.SimpleNamespace(saveLabel=switch, saveRec=switch, exportJSON=switch))
shim.getImglabelidx = lambda path: window.getImglabelidx(shim, path)

folder = os.path.abspath(sys.argv[1])
images = window.scanAllImages(shim, folder)                    # what the file list shows
window.loadFilestate(shim, folder)                             # -> shim.fileStatedict
labels = window.loadLabelFile(shim, folder + "/Label.txt")
cache = window.loadLabelFile(shim, folder + "/Cache.cach")
labels = dict(cache, **labels) if cache else labels           # importDirImages: Label.txt wins per image
shown = {}
for path in images:
    key = window.getImglabelidx(shim, path)
    shown[os.path.basename(path)] = {"confirmed": key in shim.fileStatedict,
                                     "boxes": [{"transcription": b["transcription"], "points": b["points"]}
                                               for b in labels.get(key, [])]}
print(json.dumps(shown, ensure_ascii=False))
