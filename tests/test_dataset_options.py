"""Dataset options by owner: each format's keys live under ``data.<name>`` and it checks them.

Old flat keys (``data.ferplus_mode``, ``data.fold``, ``data.sources``, ...) are errors naming
their new place in recipes and ``--set``, and move silently in stored (checkpoint) configs.
"""

import json

import pytest
import yaml
from conftest import TINY

from facemtl.config import DataConfig, config_from_dict, load_config
from facemtl.errors import FacemtlError

#: The flat keys of the data section before options moved under data.<name>, at their defaults:
#: every checkpoint written before holds all of them.
OLD_DEFAULTS = {"fold": 1, "au_ids": [], "ferplus_mode": "majority", "boxes": "", "image_template": "", "subset": "",
                "sources": [], "class_balance": 0.0}


def _options(*overrides):
    return load_config(None, list(overrides)).data.options


def test_each_format_reads_its_own_section():
    assert _options("data.name=ferplus", "data.ferplus.mode=soft").mode == "soft"
    bp4d = _options("data.name=bp4d", "data.bp4d.fold=2", "data.bp4d.au_ids=12,1", "data.bp4d.image_template={subject}.jpg")
    assert (bp4d.fold, bp4d.au_ids, bp4d.image_template) == (2, [12, 1], "{subject}.jpg")
    assert _options("data.name=disfa", "data.disfa.fold=3").fold == 3
    assert _options("data.name=300w", "data.300w.subset=common").subset == "common"
    assert _options("data.name=affwild2", "data.affwild2.sets=AU,EXPR").sets == ["AU", "EXPR"]
    assert _options("data.name=affwild2_mtl", "data.affwild2_mtl.au_ids=[1]").au_ids == [1]
    assert _options("data.name=csv", "data.csv.au_ids=[4]").au_ids == [4]
    assert _options("data.name=mtfl", "data.mtfl.boxes=b.csv").boxes == "b.csv"
    mix = _options("data.name=mix", "data.mix.sources=[{name: synthetic, weight: 1}]", "data.mix.class_balance=0.5")
    assert mix.sources == [{"name": "synthetic", "weight": 1}] and mix.class_balance == 0.5
    assert load_config(None).data.options is None and _options("data.name=rafdb") is None  # formats without options
    assert _options("data.name=ferplus").mode == "majority"  # defaults when the section is absent


def test_options_round_trip_and_are_written_under_the_name():
    config = load_config(None, ["data.name=bp4d", "data.root=/d", "data.bp4d.fold=3"])
    data = config.to_dict()["data"]
    assert list(data)[:3] == ["name", "root", "bp4d"] and data["bp4d"] == {"au_ids": [], "fold": 3, "image_template": ""}
    assert "options" not in data and "fold" not in data
    assert config_from_dict(yaml.safe_load(config.to_yaml()), migrate=False) == config


@pytest.mark.parametrize("overrides, message", [
    (["data.name=ferplus", "data.ferplus_mode=soft"], "data.ferplus_mode moved: use data.ferplus.mode"),
    (["data.name=bp4d", "data.fold=2"], "data.fold moved: use data.bp4d.fold"),
    (["data.fold=2"], "data.fold moved: use data.bp4d.fold or data.disfa.fold"),
    (["data.name=disfa", "data.au_ids=[1]"], "data.au_ids moved: use data.disfa.au_ids"),
    (["data.name=bp4d", "data.image_template=x"], "data.image_template moved: use data.bp4d.image_template"),
    (["data.name=300w", "data.subset=common"], "data.subset moved: use data.300w.subset"),
    (["data.name=affwild2", "data.subset=AU"], "data.subset moved: use data.affwild2.sets"),
    (["data.name=mtfl", "data.boxes=b.csv"], "data.boxes moved: use data.mtfl.boxes"),
    (["data.name=mix", "data.sources=[]"], "data.sources moved: use data.mix.sources"),
    (["data.name=mix", "data.class_balance=1"], "data.class_balance moved: use data.mix.class_balance"),
    (["data.name=rafdb", "data.bp4d.fold=2"], "data.bp4d holds options of dataset bp4d, but data.name=rafdb"),
    (["data.name=rafdb", "data.rafdb.fold=2"], "data.rafdb: dataset rafdb has no options of its own"),
    (["data.name=ferplus", "data.ferplus.modus=soft"], "unknown key data.ferplus.modus; valid keys in data.ferplus: mode"),
    (["data.name=ferplus", "data.ferplus=soft"], "data.ferplus: expected a mapping of ferplus options, got 'soft'"),
    (["data.name=ferplus", "data.ferplus.mode=vote"], "data.ferplus.mode='vote' is not valid; choose from: majority, "),
    (["data.name=bp4d", "data.bp4d.fold=4"], "data.bp4d.fold=4; expected 1, 2 or 3"),
    (["data.name=bp4d", "data.bp4d.au_ids=[0]"], "data.bp4d.au_ids: 0 is not a FACS AU number"),
    (["data.name=300w", "data.300w.subset=hard"], "data.300w.subset='hard'; choose from: common, challenging"),
    (["data.name=affwild2", "data.affwild2.sets=AU,POSE"], "data.affwild2.sets: 'POSE' is not a set; choose from"),
    (["data.name=mix", "data.mix.sources=[{name: bp4d, fold: 2}]"],
     r"data.mix.sources\[0\] \(bp4d\): data.fold moved: use data.bp4d.fold"),
    (["data.name=affectnut"], "unknown dataset 'affectnut'; valid datasets: "),
])
def test_old_keys_and_bad_options_are_one_line_errors(overrides, message):
    with pytest.raises(FacemtlError, match=f"^{message}") as info:
        load_config(None, overrides)
    assert "\n" not in str(info.value)


def test_old_key_in_a_recipe_names_its_new_place(tmp_path):
    recipe = tmp_path / "old.yaml"
    recipe.write_text("data:\n  name: ferplus\n  ferplus_mode: soft\n")
    with pytest.raises(FacemtlError, match="^data.ferplus_mode moved: use data.ferplus.mode$"):
        load_config(recipe)
    recipe.write_text("data:\n  name: ferplus\n  ferplus: {mode: soft}\n")
    assert load_config(recipe).data.options.mode == "soft"


def test_switching_the_recipes_dataset_drops_its_options(tmp_path, capsys):
    recipe = tmp_path / "bp4d.yaml"
    recipe.write_text("data:\n  name: bp4d\n  bp4d: {fold: 2}\n")
    config = load_config(recipe, ["data.name=disfa"])
    assert config.data.options.fold == 1 and "its options data.bp4d do not apply" in capsys.readouterr().err
    with pytest.raises(FacemtlError, match="data.bp4d holds options of dataset bp4d, but data.name=disfa"):
        load_config(recipe, ["data.name=disfa", "data.bp4d.fold=3"])


def test_stored_flat_configs_migrate_silently():
    old = {"data": {**DataConfig().to_dict(), **OLD_DEFAULTS}}
    assert config_from_dict(old) == load_config(None)  # the other formats' defaults are dropped
    with pytest.raises(FacemtlError, match="moved: use"):
        config_from_dict(old, migrate=False)
    ferplus = config_from_dict({"data": {**old["data"], "name": "ferplus", "ferplus_mode": "soft"}})
    assert ferplus.data.options.mode == "soft"
    bp4d = {"data": {**old["data"], "name": "bp4d", "fold": 2, "au_ids": [1, 12]}}
    assert (config_from_dict(bp4d).data.options.fold, config_from_dict(bp4d).data.options.au_ids) == (2, [1, 12])
    assert config_from_dict(bp4d, ["data.bp4d.fold=3"]).data.options.fold == 3  # overrides use the new keys ...
    with pytest.raises(FacemtlError, match="data.fold moved: use data.bp4d.fold"):
        config_from_dict(bp4d, ["data.fold=3"])  # ... and only those
    w300 = config_from_dict({"data": {**old["data"], "name": "300w", "subset": "common"}})
    assert w300.data.options.subset == "common"
    affwild2 = config_from_dict({"data": {**old["data"], "name": "affwild2", "subset": "AU,VA"}})
    assert affwild2.data.options.sets == ["AU", "VA"]


def test_stored_mix_moves_each_sources_keys_into_its_section():
    from facemtl.data.mix import source_balances, source_configs

    old = {"data": {**DataConfig().to_dict(), **OLD_DEFAULTS, "name": "mix", "fold": 2, "class_balance": 0.5, "sources": [
        {"name": "bp4d", "root": "b", "weight": 1}, {"name": "disfa", "root": "d", "fold": 3, "weight": 1},
        {"name": "ferplus", "root": "f", "ferplus_mode": "soft", "class_balance": 1.0, "weight": 2}]}}
    config = config_from_dict(old)
    sources, weights = source_configs(config.data)
    assert [s.options.fold for s in sources[:2]] == [2, 3]  # the mix's old flat fold was inherited
    assert sources[2].options.mode == "soft" and weights == [1.0, 1.0, 2.0]
    assert source_balances(config.data) == [0.5, 0.5, 1.0]
    assert config.data.options.sources[0] == {"name": "bp4d", "root": "b", "bp4d": {"au_ids": [], "fold": 2,
                                                                                    "image_template": ""}, "weight": 1}


def test_shipped_model_config_migrates_to_its_recipe():
    from pathlib import Path

    from facemtl.io.checkpoint import load_checkpoint
    from facemtl.weights import BASE_MODEL

    stored = load_checkpoint(BASE_MODEL).config
    assert "sources" in stored["data"]  # written before the options moved
    config = config_from_dict(stored)
    recipe = load_config(Path(__file__).resolve().parents[1] / "configs" / "facemtl_base.yaml")
    assert [s["name"] for s in config.data.options.sources] == ["fer2013", "mtfl"]
    assert [s["root"] for s in config.data.options.sources] == [s["root"] for s in recipe.data.options.sources]
    assert config.data.options.sources[1]["align_template"] == recipe.data.options.sources[1]["align_template"]


def _as_old_checkpoint(path, old_path):
    """A copy of the checkpoint at ``path`` whose stored config has the flat data keys of earlier versions."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safe_open handle, not a dict)
        metadata = dict(f.metadata())
    config = yaml.safe_load(metadata["config"])
    data = config["data"]
    mix = data.pop("mix")
    config["data"] = {**data, **OLD_DEFAULTS, "sources": mix["sources"], "class_balance": mix["class_balance"]}
    metadata["config"] = yaml.safe_dump(config, sort_keys=False)
    save_file(tensors, str(old_path), metadata=metadata)


def test_old_checkpoint_evaluates_identically(tmp_path):
    from facemtl.cli import main

    run = tmp_path / "run"
    overrides = [*TINY, "train.epochs=1", "data.name=mix", "data.mix.sources=[{name: synthetic, seed: 3}]"]
    assert main(["demo", "--out", str(run), *[part for o in overrides for part in ("--set", o)]]) == 0
    new = run / "checkpoints" / "best.safetensors"
    old = tmp_path / "old.safetensors"
    _as_old_checkpoint(new, old)
    results = []
    for path in (new, old):
        assert main(["eval", "--checkpoint", str(path), "--out", str(tmp_path / "m.json")]) == 0
        results.append(json.loads((tmp_path / "m.json").read_text()))
    assert results[0] == results[1] and results[0]["test"]
