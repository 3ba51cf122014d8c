"""Every key a user can type, in every group option, is either refused with a bad value before any work, naming the
key, or listed with the reason any value of it is accepted. A new key that is in neither table fails the suite."""

import pytest
from omegaconf import DictConfig
from test_config import OPTIONS, compose_config

from draw_exp.errors import ConfigError
from draw_exp.training import build, train

# key: (a bad value, the overrides that make the key exist). build() must raise ConfigError naming key=value.
# MORE_BAD_VALUES: further values of these keys that were once accepted silently or failed obscurely.
REFUSED = {
    "T": ("0", []),
    "latent_size": ("0", []),
    "lstm_size": ("-1", []),
    "seed": ("-1", []),
    "float32_matmul_precision": ("tf32", []),
    "attention.type": ("foveal", []),
    "attention.read_size": ("29", []),
    "attention.write_size": ("0", []),
    "data.batch_size": ("0", []),
    "data.num_workers": ("-1", []),
    "data.binarize": ("sometimes", []),
    "data.val_size": ("0", []),
    "data.split_seed": ("-1", []),
    "data.eval_seed": ("-1", []),
    "data.compose_seed": ("-1", ["data=cluttered_mnist"]),
    "data.side": ("20", ["data=two_digit_mnist"]),
    "data.train_images": ("0", ["data=two_digit_mnist"]),
    "data.val_images": ("0", ["data=two_digit_mnist"]),
    "data.test_images": ("0", ["data=two_digit_mnist"]),
    "data.distractors": ("-1", ["data=cluttered_mnist"]),
    "data.patch": ("29", ["data=cluttered_mnist"]),
    "data.size": ("0", ["data=svhn_paper"]),
    "data.crop": ("100", ["data=svhn_paper"]),
    "data.enlarge": ("-0.5", ["data=svhn_paper"]),
    "likelihood.type": ("gaussian", []),
    "likelihood.bins": ("1", ["likelihood=discretized_logistic"]),
    "likelihood.init_scale": ("0", ["likelihood=discretized_logistic"]),
    "model.lr": ("-1", []),
    "model.betas": ("[0.9]", []),
    "model.engine": ("fast", []),
    "model.eval_noise_seed": ("-1", []),
    "model.lr_warmup_steps": ("-1", []),
    "model.lr_half_life_steps": ("0", []),
    "model.kl_warmup_steps": ("-1", []),
    "model.weight_decay": ("-0.1", []),
    "model.nonfinite": ("ignore", []),
    "model.max_skipped_batches": ("-1", []),
    "model.classes": ("1", ["model=classifier"]),
    "trainer.devices": ("0", []),
    "trainer.max_steps": ("-2", []),
    "trainer.max_epochs": ("1.5", []),
    "trainer.gradient_clip_val": ("-1", []),
    "trainer.profiler": ("stopwatch", []),
    "callbacks.pictures.num_images": ("0", []),
    "callbacks.pictures.animated": ("0", []),
    "callbacks.pictures.strip_every": ("0", []),
    "callbacks.pictures.scale": ("0", []),
    "callbacks.pictures.seed": ("-1", []),
    "callbacks.pictures.every_n_epochs": ("0", []),
    "callbacks.glimpses.num_images": ("0", ["experiment=cluttered_mnist"]),
    "callbacks.glimpses.scale": ("0", ["experiment=cluttered_mnist"]),
    "callbacks.glimpses.every_n_epochs": ("0", ["experiment=cluttered_mnist"]),
    "callbacks.ema.decay": ("1", ["+callbacks/ema=exponential"]),
    "callbacks.ema.start_step": ("-1", ["+callbacks/ema=exponential"]),
    "callbacks.smoothing.window": ("0", ["+callbacks/smoothing=mean"]),
}
# options a user adds to the defaults rather than choosing among a group's files
ADDED_OPTIONS = ["+callbacks/ema=exponential", "+callbacks/smoothing=mean"]
MORE_BAD_VALUES = [
    ("trainer.devices", "3"),  # one process without DDP: Lightning would silently start 3
    ("trainer.gradient_clip_val", "0"),  # would silently turn clipping off
    ("trainer.max_steps", "abc"),  # a TypeError deep in Lightning
    ("model.betas", "[0.9,1.5]"),
    ("attention.read_size", "0"),
    ("model.weight_decay", "abc"),
    ("callbacks.ema.decay", "0"),
]
# train() checks these first, before reading a checkpoint or seeding anything
CHECKED_BY_TRAIN = {"seed", "float32_matmul_precision"}

# key: a bad value that Lightning's own Trainer or callback refuses when build() instantiates it, naming the value.
REFUSED_BY_LIGHTNING = {
    "trainer.accelerator": "abacus",
    "trainer.strategy": "telepathy",
    "trainer.precision": "7-bit",
    "trainer.gradient_clip_algorithm": "median",
    "trainer.limit_train_batches": "-1",
    "trainer.limit_val_batches": "-1",
    "trainer.limit_test_batches": "-1",
    "trainer.val_check_interval": "-1",
    "trainer.check_val_every_n_epoch": "0",
    "trainer.log_every_n_steps": "-1",
    "trainer.num_nodes": "0",
    "trainer.max_time": "tomorrow",
    "callbacks.checkpoint.mode": "best",
    "callbacks.checkpoint.save_top_k": "-2",
    "callbacks.periodic_checkpoint.save_top_k": "-2",
    "callbacks.periodic_checkpoint.every_n_train_steps": "-1",
}

FREE_STRING = "a name or free text, any string is fine"
PATH = "a folder or file name: where it does not exist, the data checks and the writers name it"
BOOLEAN = "a switch: true or false"
FROM_TOP_LEVEL = "set from a top-level key or group by interpolation, which is checked itself"
HYDRA_TARGET = "Hydra's own: the class a group option instantiates"

# key: why any value is accepted.
ACCEPTED = {
    "ckpt_path": "a path, or last: checked before any work by train() (a missing or damaged file is named)",
    "init_from": "a path: checked before any work by train() (a missing or damaged file, or another size, is named)",
    "paths.data_dir": PATH,
    "paths.output_dir": PATH,
    "paths.output_root": PATH,
    "data.data_dir": PATH,
    "data.cache_dir": PATH,
    "trainer.default_root_dir": PATH,
    "logger.save_dir": PATH,
    "callbacks.checkpoint.dirpath": PATH,
    "callbacks.periodic_checkpoint.dirpath": PATH,
    "callbacks.checkpoint.filename": FREE_STRING,
    "callbacks.periodic_checkpoint.filename": FREE_STRING,
    "logger.name": FREE_STRING,
    "logger.project": FREE_STRING,
    "logger.entity": FREE_STRING,
    "logger.group": FREE_STRING,
    "logger.id": FREE_STRING,
    "logger.tags": "a list of free-text tags",
    "callbacks.checkpoint.monitor": "a logged metric's name: Lightning checks it at the first validation",
    "callbacks.smoothing.metric": "a logged metric's name: refused, naming the key, at the sanity check's validation",
    "callbacks.periodic_checkpoint.monitor": "null: the periodic checkpoint keeps the newest state, not a best one",
    "data.download": BOOLEAN,
    "data.pin_memory": BOOLEAN,
    "data.recompose_train": BOOLEAN,
    "data.verify": BOOLEAN,
    "data.use_extra": BOOLEAN,
    "trainer.enable_progress_bar": BOOLEAN,
    "trainer.deterministic": BOOLEAN,
    "callbacks.checkpoint.save_last": BOOLEAN,
    "callbacks.checkpoint.auto_insert_metric_name": BOOLEAN,
    "callbacks.checkpoint.enable_version_counter": BOOLEAN,
    "callbacks.periodic_checkpoint.enable_version_counter": BOOLEAN,
    "logger.offline": "a switch: true, false, or null (offline unless logged in)",
    "logger.log_model": "W&B's own: false, true or all",
    "callbacks.pictures": "null turns the pictures off (the classifier's preset does)",
    "trainer.plugins": "the atomic checkpoint writer; a list of Lightning plugins",
    "model.T": FROM_TOP_LEVEL,
    "model.latent_size": FROM_TOP_LEVEL,
    "model.lstm_size": FROM_TOP_LEVEL,
    "model.attention": FROM_TOP_LEVEL,
    "model.likelihood": FROM_TOP_LEVEL,
    "model._convert_": "Hydra's own: how the module receives containers",
}


def leaf_keys(node: DictConfig, prefix: str = "") -> set[str]:
    keys = set()
    for key in node.keys():
        child = node._get_node(key)
        path = f"{prefix}{key}"
        keys |= leaf_keys(child, path + ".") if isinstance(child, DictConfig) else {path}
    return keys


def test_every_key_of_every_option_is_refused_when_bad_or_accepted_for_a_reason(tmp_path):
    keys = set()
    for override in [f"{group}={option}" for group, option in OPTIONS] + ADDED_OPTIONS:
        keys |= leaf_keys(compose_config(override, tmp_path=tmp_path))
    keys = {k for k in keys if not k.endswith("._target_") and k != "hydra"}
    listed = set(REFUSED) | set(REFUSED_BY_LIGHTNING) | set(ACCEPTED)
    unlisted = sorted(keys - listed)
    assert not unlisted, f"keys with no bad value and no reason: {unlisted} (add them to a table of this file)"
    assert not sorted(listed - keys), "listed keys that no option has any more"


BAD_VALUES = sorted((key, bad) for key, (bad, _) in REFUSED.items()) + MORE_BAD_VALUES


@pytest.mark.parametrize("key,bad", BAD_VALUES, ids=[f"{key}={bad}" for key, bad in BAD_VALUES])
def test_a_bad_value_of_each_key_is_refused_before_any_work_naming_it(key, bad, tmp_path):
    needs = REFUSED[key][1]
    cfg = compose_config(*needs, f"{key}={bad}", f"paths.data_dir={tmp_path / 'nowhere'}", tmp_path=tmp_path)
    with pytest.raises(ConfigError) as raised:
        (train if key in CHECKED_BY_TRAIN else build)(cfg)
    message = str(raised.value)
    assert message.startswith(f"{key}=") and "not allowed" in message, message
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("key", sorted(REFUSED_BY_LIGHTNING))
def test_lightnings_keys_are_refused_by_lightning_naming_the_value(key, tmp_path):
    bad = REFUSED_BY_LIGHTNING[key]
    cfg = compose_config(f"{key}={bad}", tmp_path=tmp_path)
    with pytest.raises(Exception) as raised:  # Lightning's MisconfigurationException, ValueError, ...
        build(cfg)
    assert bad in str(raised.value) or bad in repr(raised.value), str(raised.value)


# evaluate.py and sample.py: the same rule for their own configs (conf/evaluate.yaml, conf/sample.yaml). A bad value
# is refused before the checkpoint is read: the tests name a checkpoint that does not exist, so a check made after
# reading it would report the missing file instead.
SCRIPT_REFUSED = {
    "evaluate": {
        "split": "train",
        "iw_samples": "0",
        "max_batch": "0",
        "limit_images": "0",
        "device": "tpu",
        "num_workers": "-1",
        "seed": "-1",
    },
    "sample": {
        "n": "0",
        "reconstruct": "-1",
        "animated": "0",
        "strip_every": "0",
        "scale": "0",
        "device": "tpu",
        "num_workers": "-1",
        "seed": "-1",
    },
}
SCRIPT_ACCEPTED = {
    "ckpt_path": "the file is read first of all: a missing, damaged or foreign file is named (test_checkpoints.py)",
    "output": PATH,
    "paths.data_dir": PATH,
    "paths.output_dir": PATH,
    "paths.output_root": PATH,
}


def compose_script_config(script, *overrides, tmp_path):
    from hydra import compose, initialize_config_dir
    from test_config import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            script, overrides=[f"paths.output_dir={tmp_path}", f"ckpt_path={tmp_path / 'none.ckpt'}", *overrides]
        )


@pytest.mark.parametrize("script", sorted(SCRIPT_REFUSED))
def test_every_key_of_evaluate_and_sample_is_refused_when_bad_or_accepted_for_a_reason(script, tmp_path):
    keys = leaf_keys(compose_script_config(script, tmp_path=tmp_path))
    listed = set(SCRIPT_REFUSED[script]) | set(SCRIPT_ACCEPTED)
    assert not sorted(keys - listed), f"{script}.yaml keys with no bad value and no reason: {sorted(keys - listed)}"


SCRIPT_BAD_VALUES = [
    (script, key, bad) for script, table in sorted(SCRIPT_REFUSED.items()) for key, bad in table.items()
]


@pytest.mark.parametrize("script,key,bad", SCRIPT_BAD_VALUES, ids=[f"{s}-{k}={b}" for s, k, b in SCRIPT_BAD_VALUES])
def test_a_bad_value_of_evaluate_or_sample_is_refused_before_the_checkpoint_is_read(script, key, bad, tmp_path):
    from draw_exp.checkpoint_tasks import run_evaluate, run_sample

    cfg = compose_script_config(script, f"{key}={bad}", tmp_path=tmp_path)
    with pytest.raises(ConfigError) as raised:
        (run_evaluate if script == "evaluate" else run_sample)(cfg)
    message = str(raised.value)
    assert message.startswith(f"{key}=") and "not allowed" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
