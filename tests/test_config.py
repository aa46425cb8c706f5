"""Presets and validation: every bad parameter stops with a message naming it."""
import pytest

from robust_transfer import config


@pytest.mark.parametrize("preset", ["tiny", "mini"])
def test_presets_resolve(preset):
    cfg = config.resolve(preset)
    assert cfg.preset == preset and cfg.sources and cfg.targets


def test_paper_preset_is_valid_when_downloads_are_allowed():
    cfg = config.resolve("paper")
    assert cfg.allow_download and 9 in cfg.unfrozen_blocks
    assert "paper/imagenet/l2/3" in cfg.sources


def test_overrides_and_papermill_lists():
    cfg = config.resolve("mini", targets=["digits"], n_values=[10, 20], seeds=[4], epochs=5,
                         unfrozen_blocks=[2], n_stimuli=None)
    assert cfg.targets == ("digits",) and cfg.n_values == (10, 20) and cfg.seeds == (4,)
    assert cfg.unfrozen_blocks == (2,) and cfg.epochs == 5
    assert cfg.n_stimuli == config.resolve("mini").n_stimuli   # None = preset default
    assert config.resolve("mini", targets="digits").targets == ("digits",)


def test_hash_is_stable_and_sensitive():
    a, b = config.resolve("mini"), config.resolve("mini")
    assert config.config_hash(a) == config.config_hash(b)
    assert config.config_hash(a) != config.config_hash(config.resolve("mini", seeds=[0, 1]))
    assert config.config_hash({"x": 1, "y": 2}) == config.config_hash({"y": 2, "x": 1})


BAD = [
    (dict(preset="huge"), "preset='huge'"),
    (dict(targets=["cifar11"]), "cifar11"),
    (dict(targets=["cifar10"]), "cifar10"),            # online dataset, downloads off
    (dict(targets=["digits"], n_values=[5000]), "n_values=5000"),
    (dict(n_values=[-10]), "n_values"),
    (dict(n_values=[5]), "n_values=5"),                 # fewer than the number of classes
    (dict(sources=["mini/fmnist/l2/3.0/s0"]), "3.0"),   # eps not in the zoo
    (dict(sources=["mini/fmnist/l3/1.0/s0"]), "l3"),    # unknown norm
    (dict(sources=["mini/fmnist/l2/1.0/s7"]), "s7"),    # seed not trained
    (dict(unfrozen_blocks=[4]), "unfrozen_blocks"),
    (dict(frozen_bn="frozen"), "frozen_bn='frozen'"),
    (dict(device="tpu"), "device='tpu'"),
    (dict(epochs=0), "epochs=0"),
    (dict(lr=-1.0), "lr=-1.0"),
    (dict(seeds=[-1]), "seeds"),
    (dict(val_size=10_000), "val_size"),
    (dict(learning_rate=0.1), "unknown parameter"),
    (dict(blur_sigmas=[-1]), "blur_sigmas"),
    (dict(damping=0), "damping=0"),
    (dict(influence_n=5), "influence_n=5"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_parameters_are_rejected_with_a_named_message(kwargs, message):
    kwargs = dict(kwargs)
    preset = kwargs.pop("preset", "mini")
    with pytest.raises(ValueError) as err:
        config.resolve(preset, **kwargs)
    assert message in str(err.value)
    assert "allowed" in str(err.value) or "must" in str(err.value) or "not in the zoo" in str(err.value) \
        or "unknown" in str(err.value)
