"""Config: YAML + dotted overrides checked against the dataclasses."""

from pathlib import Path

import pytest

from facemtl.config import Config, config_from_dict, load_config
from facemtl.errors import FacemtlError


def test_defaults_and_overrides_are_typed():
    config = load_config(None, ["train.lr=0.01", "train.epochs=3", "data.label_fraction.au=0.5", "model.tasks=expr,au"])
    assert config.train.lr == 0.01 and isinstance(config.train.lr, float)
    assert config.train.epochs == 3
    assert config.data.label_fraction["au"] == 0.5
    assert config.data.label_fraction["expr"] == 1.0  # partial dict keeps the other tasks
    assert config.model.tasks == ["expr", "au"]


def test_int_accepted_for_float_but_not_the_reverse():
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(FacemtlError, match=r"train.epochs: expected int, got 2.5"):
        load_config(None, ["train.epochs=2.5"])


def test_exponent_without_a_dot_is_a_float():
    # YAML 1.1 reads "1e-5" as text; a float field takes it as the number the user meant
    assert load_config(None, ["train.lr=1e-5"]).train.lr == 1e-5


def test_str_field_keeps_digits_as_text():
    assert load_config(None, ["data.root=2024"]).data.root == "2024"
    # Also for fields that only the chosen method's config has.
    assert load_config(None, ["method.name=dacl", "method.center_update=autograd"]).method.center_update == "autograd"


def test_comma_lists_are_typed():
    assert load_config(None, ["method.name=dacl", "method.ce_unit_widths=64,32,8"]).method.ce_unit_widths == [64, 32, 8]


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=0.1", r"unknown key train.lrr; valid keys in train: epochs, batch_size, lr"),
        ("trian.lr=0.1", r"section one of data, model, method, train"),
        ("train.lr", r"not of the form section.key=value"),
        ("train.lr=fast", r"train.lr: expected float, got 'fast'"),
        ("model.tasks=expr,smell", r"unknown task 'smell'"),
        ("method.name=magic", r"unknown method .magic.; valid methods: dacl, distill, mal, plain, scn, tcdcn"),
        ("train.optimizer=adamax", r"train.optimizer=.adamax. is not valid; choose from: adamw, adam, sgd"),
        ("data.label_noise=1.5", r"data.label_noise=1.5 is out of range"),
        ("data.label_fraction.smell=0.5", r"unknown task 'smell' in data.label_fraction"),
        ("data.num_landmarks=7", r"expected 5 or 68"),
        ("train.progress=maybe", r"train.progress: expected bool"),
        ("train.select_tasks=au,smell", r"train.select_tasks: 'smell' is not a task of this model"),
    ],
)
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(FacemtlError, match=message) as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


def test_yaml_file_and_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  epochs: 2\nmodel:\n  backbone: test_tiny\n")
    config = load_config(good, ["train.epochs=4"])
    assert config.train.epochs == 4 and config.model.backbone == "test_tiny"

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 2\n   lr: [\n")
    with pytest.raises(FacemtlError, match=r"bad.yaml:\d+: malformed YAML"):
        load_config(bad)
    with pytest.raises(FacemtlError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    wrong_section = tmp_path / "wrong.yaml"
    wrong_section.write_text("optimiser:\n  lr: 1\n")
    with pytest.raises(FacemtlError, match="unknown config section 'optimiser'"):
        load_config(wrong_section)


def test_round_trip_through_dict():
    config = load_config(None, ["train.lr=0.02", "data.label_noise=0.3"])
    again = config_from_dict(config.to_dict())
    assert again == config
    assert isinstance(again, Config)


def test_recipes_in_configs_folder_load():
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert recipes, "configs/ has no recipes"
    for recipe in recipes:
        load_config(recipe)


def test_recipe_base_is_merged_section_by_section(tmp_path):
    (tmp_path / "parent.yaml").write_text(
        "data: {name: mix, image_size: 48, mix: {class_balance: 0.5, sources: [{name: fer2013, root: a}, {name: mtfl, root: b}]}}\n"
        "train: {epochs: 30, lr: 0.002}\n")
    (tmp_path / "child.yaml").write_text(
        "base: parent.yaml\ndata: {mix: {sources: [{name: fer2013, root: c}]}}\ntrain: {epochs: 20}\n")
    config = load_config(tmp_path / "child.yaml", ["train.lr=0.01"])
    assert config.data.image_size == 48 and config.data.name == "mix"  # kept from the base
    assert [s["root"] for s in config.data.options.sources] == ["c"]  # a list is replaced whole
    assert config.data.options.class_balance == 0.5  # the format's options merge key by key
    assert config.train.epochs == 20 and config.train.lr == 0.01  # the child, then overrides


def test_recipe_base_errors_name_the_file(tmp_path):
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(FacemtlError, match="loops back"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FacemtlError, match="missing.yaml does not exist"):
        load_config(tmp_path / "orphan.yaml")


def test_switching_the_recipes_method_drops_its_options(capsys):
    recipe = Path(__file__).resolve().parents[1] / "configs/scn_synthetic.yaml"
    config = load_config(recipe, ["method.name=plain", "train.epochs=3"])
    assert config.method.name == "plain" and config.train.epochs == 3
    assert config.data.label_noise == 0.3  # the rest of the recipe still applies
    assert "beta, margin_1, margin_2, relabel_epoch, relabel_scope" in capsys.readouterr().err
    # an option of the old method given on the command line is still an error
    with pytest.raises(FacemtlError, match="unknown key method.beta"):
        load_config(recipe, ["method.name=plain", "method.beta=0.5"])
    assert load_config(recipe).method.beta == 0.7  # without a switch nothing is dropped
