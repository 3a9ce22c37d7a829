import re

import pytest

from ocr_tasks.config import load_config
from ocr_tasks.errors import UsageError


def test_defaults_load_from_configs_pipeline_yaml():
    config = load_config()
    assert config.split.train == 0.6 and config.gate.rec_min_acc == 0.9
    assert config.training.models == ["det", "rec"]
    assert config.training.for_model("rec").pdx_model_name == "PP-OCRv5_mobile_rec"


def test_overrides_reach_nested_sections_and_stage_lists():
    config = load_config(overrides=[
        "gate.rec_min_acc=0.95",
        "training.rec.stages=[{name: synthetic, epochs: 3, exports: [synth_01]}, {name: real, epochs: 5, freeze_backbone: true}]",
    ])
    assert config.gate.rec_min_acc == 0.95
    synthetic, real = config.training.rec.stages
    assert (synthetic.name, synthetic.epochs, synthetic.exports) == ("synthetic", 3, ["synth_01"])
    assert real.freeze_backbone and real.exports is None


@pytest.mark.parametrize("override, message", [
    ("split.trian=0.5", "unknown config key split.trian"),
    ("training.rec.stages=[{epoch: 3}]", "unknown config key training.rec.stages[0].epoch"),
    ("split.train=0.9", "sum to 1"),
    ("validation.processes=-1", "validation.processes: must be >= 0"),
    ("gate=3", "gate: must be a mapping"),
    ("nonsense", "key.path=value"),
    ("postprocess.unclip_ratios=[]", "postprocess.unclip_ratios: must name at least one value"),
    ("postprocess.box_threshes=[0.6, 1.5]", "postprocess.box_threshes: each must be in .0.0, 1.0], got 1.5"),
    ("postprocess.val_images=-1", "postprocess.val_images: must be >= 0"),
])
def test_bad_config_names_the_key(override, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(overrides=[override])


def test_yaml_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("storage:\n  bucket: [unclosed\n")
    with pytest.raises(UsageError, match=rf"{path}:\d+: not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("override, message", [
    ("validation.max_image_pixels=abc", "validation.max_image_pixels: must be an integer"),
    ("training.models=det", "training.models: must be a list"),
    ("training.models=[det, ocr]", "training.models: must be a list"),
    ("split.train=[", "not valid YAML"),
])
def test_wrong_types_are_usage_errors(override, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        load_config(overrides=[override])


def test_cli_exit_2_for_unreadable_config_and_bad_keys(tmp_path, capsys):
    from ocr_tasks.cli import main

    assert main(["--config", str(tmp_path), "discover"]) == 2
    assert main(["--set", "storage.bucket=x", "pull-dataset", "../up", "--dest", str(tmp_path / "d")]) == 2
    assert "Traceback" not in capsys.readouterr().err


# --- typed config (pydantic): strict types, ranges, one line per problem naming where it came from ---

def test_a_string_where_a_list_belongs_is_refused_naming_file_and_key(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("training:\n  rec:\n    stages:\n      - name: finetune\n        exports: digits_800\n")
    with pytest.raises(UsageError) as caught:
        load_config(path)
    # before: accepted, and `record["export"] in exports` became a substring test
    assert str(caught.value) == (f"{path}: training.rec.stages[0].exports: must be a list of export names, "
                                 "got 'digits_800'")


@pytest.mark.parametrize("override", ["gate.rec_min_acc=1.5", "gate.det_min_hmean=-0.1", "gate.e2e_min_hmean=2",
                                      "gate.max_regression=1.01"])
def test_gate_thresholds_are_fractions(override):
    key, value = override.split("=")
    with pytest.raises(UsageError) as caught:
        load_config(overrides=[override])
    assert str(caught.value) == f"--set {override}: {key}: must be between 0 and 1, got {float(value)}"


def test_unknown_keys_are_refused_with_their_dotted_path(tmp_path):
    with pytest.raises(UsageError) as caught:
        load_config(overrides=["gate.rec_min_ac=0.5"])
    assert str(caught.value).startswith("--set gate.rec_min_ac=0.5: unknown config key gate.rec_min_ac "
                                        "(known: det_min_hmean, e2e_min_hmean, ")
    path = tmp_path / "pipeline.yaml"
    path.write_text("training:\n  det:\n    stages:\n      - {name: a, epochs: 1}\n      - {name: b, epoks: 2}\n")
    with pytest.raises(UsageError, match=re.escape(f"{path}: unknown config key training.det.stages[1].epoks "
                                                   "(known: augment, epochs, exports, ")):
        load_config(path)


@pytest.mark.parametrize("override, message", [
    ("approval.required=1", "approval.required: must be true or false, got 1"),      # no ints for bools
    ("gate.slice_min_samples=true", "gate.slice_min_samples: must be an integer, got True"),   # no bools for ints
    ("training.det.stages=[{name: a, epochs: 2.5}]", "training.det.stages[0].epochs: must be an integer, got 2.5"),
    ("storage.bucket=123", "storage.bucket: must be a string, got 123"),
    ("training.rec.stages=[]", "training.rec.stages: must name at least one stage"),
    ("training.rec.stages=[{name: a}, {name: a}]", "'a' is used twice"),
    ("training.rec.stages=[{name: ../x}]", "training.rec.stages[0].name: must be a folder name"),
    ("training.rec.stages=[{overrides: {Global.epoch_num: 3}}]", "may not set Global.epoch_num"),
    ("infra_validation.timeout_s=0", "infra_validation.timeout_s: must be >= 1, got 0"),
    ("incoming.give_up_after_h=0", "incoming.give_up_after_h: must be > 0, got 0"),
])
def test_strict_types_and_ranges(override, message):
    with pytest.raises(UsageError, match=re.escape(f"--set {override}: ") + ".*" + re.escape(message)):
        load_config(overrides=[override])


def test_ints_pass_for_numbers_and_each_problem_gets_its_line():
    config = load_config(overrides=["split.train=1", "split.val=0", "split.test=0", "gate.max_regression=0"])
    assert config.split.train == 1.0 and isinstance(config.split.train, float)
    with pytest.raises(UsageError) as caught:
        load_config(overrides=["gate.rec_min_acc=2", "storage.concurrency=0"])
    assert str(caught.value).splitlines() == [
        "--set storage.concurrency=0: storage.concurrency: must be >= 1, got 0",
        "--set gate.rec_min_acc=2: gate.rec_min_acc: must be between 0 and 1, got 2.0",
    ]


def test_values_from_the_environment_say_so(monkeypatch):
    from ocr_tasks.config import OVERRIDES_ENV

    monkeypatch.setenv(OVERRIDES_ENV, "work_dir=/tmp/w gate.det_min_hmean=7")
    with pytest.raises(UsageError, match=re.escape(f"${OVERRIDES_ENV} gate.det_min_hmean=7: gate.det_min_hmean: ")):
        load_config()


def test_sections_built_in_code_are_checked_too():
    from ocr_tasks.config import GateConfig, SplitConfig

    assert GateConfig(det_min_hmean=0.85).det_min_hmean == 0.85
    with pytest.raises(UsageError, match=re.escape("GateConfig: rec_min_acc: must be between 0 and 1, got 1.5")):
        GateConfig(rec_min_acc=1.5)
    with pytest.raises(UsageError, match="sum to 1"):
        SplitConfig(train=0.5)


def test_config_is_frozen_picklable_and_copied_with_model_copy():
    import pickle

    config = load_config()
    assert pickle.loads(pickle.dumps(config)) == config      # the local runner hands it to forked workers
    with pytest.raises(Exception):
        config.gate.rec_min_acc = 0.1
    copy = config.model_copy(update={"model_name": "other"})
    assert copy.model_name == "other" and config.model_name == "ocr"


# --- training profiles ---

CPU_OVERRIDES = {"Architecture.Neck.encoder_type": "fc", "Architecture.Neck.hidden_size": 96,
                 "Optimizer.lr.warmup_epoch": 1, "Global.eval_batch_step": [0, 50]}


def test_the_default_profile_is_the_cpu_one_the_pipeline_yaml_used_to_hold():
    training = load_config().training
    assert training.profile == "cpu"
    assert (training.det.template, training.det.pdx_model_name) == ("configs/profiles/det_cpu_small.yml",
                                                                   "PP-OCRv5_mobile_det")
    assert [(s.name, s.epochs, s.learning_rate, s.overrides) for s in training.det.stages] == [("finetune", 6, None, {})]
    assert training.rec.template == "configs/profiles/rec_cpu_small.yml"
    assert [(s.name, s.epochs, s.learning_rate, s.overrides) for s in training.rec.stages] == [
        ("finetune", 4, 0.01, CPU_OVERRIDES)]
    assert (training.rec.detector_like_crops.copies, training.rec.detector_like_crops.margin) == (2, (-0.05, 0.3))


def test_production_profile_resolves_to_the_production_templates_without_cpu_overrides():
    training = load_config(overrides=["training.profile=production"]).training
    assert training.profile == "production"
    assert training.det.template == "configs/production/det_pp-ocrv5_mobile.yml"
    assert training.rec.template == "configs/production/rec_pp-ocrv5_mobile.yml"
    assert (training.det.pdx_model_name, training.rec.pdx_model_name) == ("PP-OCRv5_mobile_det", "PP-OCRv5_mobile_rec")
    for model in (training.det, training.rec):
        for stage in model.stages:
            assert not set(stage.overrides) & set(CPU_OVERRIDES) - {"Global.eval_batch_step"}
            assert not any(key.startswith("Architecture.") for key in stage.overrides)
    assert [s.epochs for s in training.det.stages] == [100] and [s.epochs for s in training.rec.stages] == [20]


def test_the_configs_keys_merge_over_the_profile_and_lists_are_replaced(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("training:\n  profile: production\n  det:\n    pretrained: pretrained/det.pdparams\n"
                    "  rec:\n    stages: [{name: only, epochs: 2}]\n")
    training = load_config(path).training
    assert training.det.pretrained == "pretrained/det.pdparams"
    assert training.det.template == "configs/production/det_pp-ocrv5_mobile.yml"     # the rest from the profile
    assert [s.epochs for s in training.det.stages] == [100]
    assert [(s.name, s.epochs, s.learning_rate, s.overrides) for s in training.rec.stages] == [("only", 2, None, {})]
    # one key switches back; the config's own keys still apply over the other profile
    training = load_config(path, ["training.profile=cpu"]).training
    assert training.det.template == "configs/profiles/det_cpu_small.yml"
    assert training.det.pretrained == "pretrained/det.pdparams"


def test_an_unknown_profile_is_refused_naming_the_profiles(tmp_path):
    with pytest.raises(UsageError) as caught:
        load_config(overrides=["training.profile=gpu"])
    assert str(caught.value) == "--set training.profile=gpu: training.profile: unknown profile 'gpu' " \
                                "(profiles: cpu, production)"
    path = tmp_path / "pipeline.yaml"
    path.write_text("training:\n  profile: ../pipeline\n")
    with pytest.raises(UsageError, match=re.escape(f"{path}: training.profile: unknown profile '../pipeline' (")):
        load_config(path)


def test_problems_in_a_profile_name_the_profile(tmp_path, monkeypatch):
    from ocr_tasks import config as config_module

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "cpu.yaml").write_text((config_module.PROFILES_DIR / "cpu.yaml").read_text())
    (profiles / "broken.yaml").write_text("det:\n  template: x.yml\n  pdx_model_name: X\n  stages: [{name: a, epochs: 0}]\n"
                                          "rec:\n  template: y.yml\n  pdx_model_name: Y\n")
    (profiles / "typo.yaml").write_text("dett: {}\n")
    monkeypatch.setattr(config_module, "PROFILES_DIR", profiles)
    with pytest.raises(UsageError) as caught:
        load_config(overrides=["training.profile=broken"])
    assert str(caught.value) == f"{profiles / 'broken.yaml'}: training.det.stages[0].epochs: must be >= 1, got 0"
    # the config's own value over the profile's is the config's problem
    with pytest.raises(UsageError) as caught:
        load_config(overrides=["training.profile=broken", 'training.det.pdx_model_name=""'])
    assert str(caught.value).splitlines()[0] == ('--set training.det.pdx_model_name="": training.det.pdx_model_name: '
                                                 "must not be empty")
    with pytest.raises(UsageError, match=re.escape(f"{profiles / 'typo.yaml'}: unknown profile key dett (known: det, rec)")):
        load_config(overrides=["training.profile=typo"])


def test_production_profile_renders_paddleocr_configs_for_det_and_rec(tmp_path):
    """What `--set training.profile=production` trains: each stage renders onto its template (no key the
    template lacks), with the profile's epochs and learning rate."""
    from ocr_tasks.training.engine import Engine
    from ocr_tasks.training.train import _stage_config

    config = load_config(overrides=["training.profile=production"])
    engine = Engine.locate(config.training.engine_checkout)
    data_dir = tmp_path / "data"     # rendering reads no data unless a stage narrows `exports`
    for task, backbone in (("det", "PPLCNetV3"), ("rec", "PPLCNetV3")):
        settings = config.training.for_model(task)
        stage = settings.stages[0]
        rendered = _stage_config(settings.template, engine, task, data_dir, tmp_path / task, stage, None, None, None,
                                 True)
        assert rendered["Global"]["epoch_num"] == stage.epochs
        assert rendered["Optimizer"]["lr"]["learning_rate"] == stage.learning_rate
        assert rendered["Architecture"]["Backbone"]["name"] == backbone
        assert rendered["Global"]["eval_batch_step"] == stage.overrides["Global.eval_batch_step"]
        assert rendered["Train"]["dataset"]["label_file_list"] == [str(data_dir.absolute() / task / "train.txt")]
    assert "encoder_type" not in str(rendered["Architecture"])    # rec: the template's SVTR neck, not the CPU FC one


def test_detector_like_margin_is_set_as_yaml_writes_it_and_checked():
    """[low, high] from a file or --set is a YAML list: it is taken (strict mode alone refused every list), and
    a range the wrong way round is refused by name."""
    crops = load_config(overrides=["training.rec.detector_like_crops.margin=[0.0, 0.4]"]).training.rec
    assert crops.detector_like_crops.margin == (0.0, 0.4)
    with pytest.raises(UsageError, match=r"detector_like_crops.margin: .*low <= high"):
        load_config(overrides=["training.rec.detector_like_crops.margin=[0.3, 0.1]"])


def test_the_baseline_is_an_inference_folder_and_falls_back_to_the_folder_training_starts_from():
    """baseline.<kind>: the model a team runs today, with the templates of baseline.profile; unset, the inference
    folder a fine-tune starts from (its training template); training weights are no baseline (no dict, no program)."""
    config = load_config(overrides=["baseline.det=pretrained/det/", "baseline.rec=pretrained/rec/"])
    assert config.baseline_source("det") == ("pretrained/det/", "configs/production/det_pp-ocrv5_mobile.yml")
    assert config.baseline_source("rec") == ("pretrained/rec/", "configs/production/rec_pp-ocrv5_mobile.yml")
    assert load_config().baseline_source("det") is None and load_config().gate.must_beat_stock is True
    fine_tune = load_config(overrides=["training.profile=production", "training.det.pretrained=p/det/",
                                       "training.rec.pretrained=p/rec.pdparams"])
    assert fine_tune.baseline_source("det") == ("p/det/", "configs/production/det_pp-ocrv5_mobile.yml")
    assert fine_tune.baseline_source("rec") is None
    with pytest.raises(UsageError, match=r"baseline\.det: must be an inference model folder in the bucket \(a key "
                                         r"ending in /\), got 'pretrained/x\.pdparams'"):
        load_config(overrides=["baseline.det=pretrained/x.pdparams"])
    with pytest.raises(UsageError, match=r"baseline: profile: unknown profile 'gpu' \(profiles: cpu, production\)"):
        load_config(overrides=["baseline.profile=gpu", "baseline.rec=pretrained/rec/"])
