"""Presets and validation: every bad parameter stops with a message naming it."""
import pytest

from robust_transfer import cache, config, zoo


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
    assert cache.key(a) == cache.key(b) == cache.key(a.to_dict())
    assert cache.key(a) != cache.key(config.resolve("mini", seeds=[0, 1]))
    assert cache.key({"x": 1, "y": 2}) == cache.key({"y": 2, "x": 1})
    assert not hasattr(config, "config_hash")


def test_source_presets_read_the_zoo_registry():
    """The mini grid is defined once, in the zoo; the presets list its ids in its order."""
    mini = config.resolve("mini")
    assert mini.sources == tuple(zoo.list_sources("mini"))
    assert mini.finetune_sources == tuple(zoo.finetuned_sources("mini")) == (
        tuple(zoo.main_sources("mini")) + mini.sources[-3:])   # main families + matched noise
    assert zoo.main_sources("mini") == list(mini.sources[:12])
    assert all(zoo.spec(s).family == f"mini/fmnist/{zoo.MATCHED_NOISE}" for s in mini.sources[-3:])
    assert {zoo.spec(s).family.split("/", 2)[2] for s in mini.finetune_sources} == \
        {*zoo.MAIN_FAMILIES, zoo.MATCHED_NOISE}
    for preset in ("tiny", "paper"):
        assert set(config.resolve(preset).sources) <= set(zoo.list_sources())


def test_source_seed_offset_picks_a_disjoint_seed_set():
    a, b = config.resolve("mini"), config.resolve("mini", source_seed_offset="6")
    assert b.source_seed_offset == 6 and len(b.sources) == len(a.sources) == 20
    assert not set(a.sources) & set(b.sources)
    assert [zoo.spec(s).family for s in a.sources] == [zoo.spec(s).family for s in b.sources]
    assert {zoo.spec(s).seed for s in b.finetune_sources} == set(range(6, 12))
    assert len(b.textured_sources) == 12 and not set(a.textured_sources) & set(b.textured_sources)
    # explicit sources are taken as given; a re-resolved config is not shifted twice
    c = config.resolve("mini", source_seed_offset=6, sources=["mini/fmnist/natural/s0"])
    assert c.sources == ("mini/fmnist/natural/s0",)
    again = config.resolve("mini", **{k: v for k, v in b.to_dict().items() if k != "preset"})
    assert again.sources == b.sources
    for bad, match in ((-1, "integer >= 0"), (1.5, "integer >= 0"), ("x", "integer >= 0")):
        with pytest.raises(ValueError, match=f"source_seed_offset={bad!r} is not allowed; .*{match}"):
            config.resolve("mini", source_seed_offset=bad)
    with pytest.raises(ValueError, match="source_seed_offset=1 .*downloaded checkpoints"):
        config.resolve("paper", source_seed_offset=1)


@pytest.mark.parametrize("overrides,expected", [
    # papermill -p hands these strings; -y / -f give the lists
    (dict(targets='["digits"]'), dict(targets=("digits",))),
    (dict(targets='["digits", "textures"]'), dict(targets=("digits", "textures"))),
    (dict(targets="digits"), dict(targets=("digits",))),
    (dict(targets=" [digits, textures] "), dict(targets=("digits", "textures"))),
    (dict(seeds="[3, 4]"), dict(seeds=(3, 4))),
    (dict(seeds="3"), dict(seeds=(3,))),
    (dict(seeds=3), dict(seeds=(3,))),
    (dict(n_values="[10, 20]"), dict(n_values=(10, 20))),
    (dict(n_values=["10", "20"]), dict(n_values=(10, 20))),
    (dict(blur_sigmas="[0, 0.5, 1e-1]"), dict(blur_sigmas=(0, 0.5, 0.1))),
    (dict(unfrozen_blocks="[0, 2]"), dict(unfrozen_blocks=(0, 2))),
    (dict(sources='["mini/fmnist/l2/1.0/s0"]', finetune_sources="[]"),
     dict(sources=("mini/fmnist/l2/1.0/s0",), finetune_sources=())),
    (dict(sources="mini/fmnist/l2/1.0/s0"), dict(sources=("mini/fmnist/l2/1.0/s0",))),
    (dict(targets="null"), dict(targets=("mnist5k", "digits", "textures"))),  # null = default
    (dict(epochs="5", lr="1e-3", head_lr="0.01", loo_points="0"),
     dict(epochs=5, lr=1e-3, head_lr=0.01, loo_points=0)),
    (dict(allow_download="False", augment="true"), dict(allow_download=False, augment=True)),
    (dict(allow_download=False, epochs=5), dict(allow_download=False, epochs=5)),
    (dict(device="cpu", frozen_bn="train"), dict(device="cpu", frozen_bn="train")),
])
def test_papermill_string_forms(overrides, expected):
    cfg = config.resolve("mini", **overrides)
    for name, value in expected.items():
        got = getattr(cfg, name)
        assert got == value and type(got) is type(value), (name, got)
        if isinstance(value, tuple):
            assert [type(v) for v in got] == [type(v) for v in value], (name, got)
    assert cache.key(config.resolve("mini", targets='["digits"]')) == \
        cache.key(config.resolve("mini", targets=["digits"]))


@pytest.mark.parametrize("name,value", [
    ("lr", float("nan")), ("lr", float("inf")), ("lr", "nan"), ("head_lr", "inf"),
    ("damping", float("inf")), ("damping", "nan"), ("blur_sigmas", [0.0, float("inf")]),
    ("blur_sigmas", "[0, .nan]"), ("epochs", float("nan")), ("n_values", [float("inf")]),
    ("lr", True), ("damping", True), ("epochs", True), ("loo_points", True), ("seeds", [True]),
    ("unfrozen_blocks", [True]), ("finetune_max_n", False), ("blur_sigmas", [True]),
    ("epochs", "5.0"), ("epochs", "five"), ("allow_download", "maybe"), ("augment", 1),
    ("targets", "[1]"), ("targets", "{a: 1}"), ("seeds", "[3, 4"),
])
def test_non_finite_bool_and_unparsable_values_are_rejected(name, value):
    with pytest.raises(ValueError, match=rf"^{name}=.* is not allowed; "):
        config.resolve("mini", **{name: value})


def test_cuda_device_without_cuda_is_rejected(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device='cuda' is not allowed; .*no CUDA"):
        config.resolve("mini", device="cuda")
    assert config.resolve("mini", device="auto").torch_device().type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.resolve("mini", device="cuda").device == "cuda"


BAD = [
    (dict(preset="huge"), "preset='huge'"),
    (dict(targets=["cifar11"]), "cifar11"),
    (dict(targets=["cifar10"]), "cifar10"),            # online dataset, downloads off
    (dict(targets=["digits"], n_values=[5000]), "n_values=5000"),
    (dict(n_values=[-10]), "n_values"),
    (dict(n_values=[5]), "n_values=5"),                 # fewer than the number of classes
    (dict(sources=["mini/fmnist/l2/3.0/s0"]), "3.0"),   # eps not in the zoo
    (dict(sources=["mini/fmnist/l3/1.0/s0"]), "l3"),    # unknown norm
    (dict(sources=["mini/fmnist/l2/3.0/s0"]), "eps 3"),  # eps not in the zoo
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
    (dict(authors_min_steps=-1), "authors_min_steps=-1"),
    (dict(head_to_pool="maybe"), "head_to_pool='maybe'"),
    (dict(compare_targets=["cifar11"]), "cifar11"),
    # the other recipe's n are checked on the compared targets: digits' pool is 1,297 images
    (dict(compare_targets=["digits"], compare_n_values=[1500]), "target 'digits'"),
    (dict(influence_settings=["head_only"]), "influence_settings=('head_only',)"),
    (dict(influence_settings=["finetuned", "last"]), "influence_settings"),
]


def test_influence_settings_per_preset_and_from_the_command_line():
    """Mini studies the fine-tuned setting only (issue 21: its budget pays for the loss-matched
    heads); tiny and paper both settings; papermill's string form parses."""
    from robust_transfer import influence_study
    assert config._INFLUENCE_SETTINGS == influence_study.SETTINGS   # config imports no section
    assert config.resolve("mini").influence_settings == ("finetuned",)
    assert config.resolve("tiny").influence_settings == ("finetuned", "head_only")
    assert config.resolve("mini", influence_settings='["finetuned", "head_only"]'
                          ).influence_settings == ("finetuned", "head_only")


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_parameters_are_rejected_with_a_named_message(kwargs, message):
    kwargs = dict(kwargs)
    preset = kwargs.pop("preset", "mini")
    with pytest.raises(ValueError) as err:
        config.resolve(preset, **kwargs)
    assert message in str(err.value)
    assert "allowed" in str(err.value) or "must" in str(err.value) or "not in the zoo" in str(err.value) \
        or "unknown" in str(err.value)


def test_other_recipe_targets_and_whole_pool_fields():
    mini, tiny, paper = config.resolve("mini"), config.resolve("tiny"), config.resolve("paper")
    assert mini.compared_targets() == ("mnist5k", "digits")       # not the texture control
    assert mini.compare_n_values == (10, 40) and mini.head_to_pool and mini.authors_min_steps == 100
    assert config.resolve("mini", targets=["digits", "textures"]).compared_targets() == ("digits",)
    assert config.resolve("mini", compare_targets=[]).compared_targets() == mini.targets
    # textures' pool holds 1,900 images: n = 1500 is fine when only textures is compared
    assert config.resolve("mini", compare_targets=["textures"],
                          compare_n_values=[1500]).compare_n_values == (1500,)
    assert not tiny.head_to_pool and tiny.authors_min_steps == 0
    assert not paper.head_to_pool and paper.full_set and paper.authors_min_steps == 100


# ---------------------------------------------------------------- main_blocks follows unfrozen_blocks
@pytest.mark.parametrize("preset,unfrozen,main", [
    ("mini", "[2]", 2),            # the preset's 1 is not among them: the largest
    ("mini", [0, 2, 3], 3),
    ("mini", [1, 3], 1),           # the preset's 1 is among them: kept
    ("paper", [0, 3], 3),
    ("paper", [0, 1], 1),
])
def test_main_blocks_follows_unfrozen_blocks(preset, unfrozen, main):
    assert config.resolve(preset, unfrozen_blocks=unfrozen).main_blocks == main
    assert config.resolve(preset, unfrozen_blocks=unfrozen, main_blocks=None).main_blocks == main


def test_main_blocks_outside_unfrozen_blocks_is_refused_naming_both():
    assert config.resolve("mini", unfrozen_blocks=[0, 2], main_blocks=2).main_blocks == 2
    with pytest.raises(ValueError, match=r"main_blocks=2 is not allowed; must be one of "
                                         r"unfrozen_blocks=\[0, 1\]"):
        config.resolve("mini", main_blocks=2)
    with pytest.raises(ValueError, match=r"main_blocks=0 .*unfrozen_blocks=\[2\]"):
        config.resolve("mini", unfrozen_blocks=[2], main_blocks="0")
    with pytest.raises(ValueError, match="unfrozen_blocks=.* give at least one"):
        config.resolve("mini", unfrozen_blocks=[])


# ---------------------------------------------------------------- injected notebook parameters
PARAMS_CELL = 'from typing import Optional\npreset: str = "mini"\ntargets: Optional[list] = None\n'


@pytest.mark.parametrize("injected,unknown", [
    ('# Parameters\npreset = "tiny"\ntargets = ["digits"]\n', None),
    ('# Parameters\npreset = "tiny"\ntarget = ["digits"]\nepochz = 3\n', "['epochz', 'target']"),
])
def test_check_injected_names_the_unknown_parameters(injected, unknown):
    history = ["", PARAMS_CELL, injected, "import sys\nREF = 'main'"]   # IPython's In
    if unknown is None:
        config.check_injected({"In": history})
    else:
        with pytest.raises(ValueError, match=rf"unknown parameter\(s\) \{unknown}; allowed: "
                                             rf"\['preset', 'targets'\]"):
            config.check_injected({"In": history})


def test_check_injected_without_papermill_checks_nothing():
    config.check_injected({"In": ["", PARAMS_CELL, "x = 1"]})
    config.check_injected({})
