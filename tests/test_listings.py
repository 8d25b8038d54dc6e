"""`archbench models [PATTERN]` and `archbench datasets`: the registries, asked from the command line
(in-process with typer's CliRunner: no signal or subprocess needed)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from archbench.cli.app import app
from archbench.data import dataset_kinds
from archbench.models import model_names

runner = CliRunner()


def test_models_pattern_lists_matching_names_with_params_from_a_meta_build() -> None:
    res = runner.invoke(app, ["models", "resnet*", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == [n for n in model_names() if n.startswith("resnet")]
    assert {r["family"] for r in rows} == {"resnet"}
    from archbench.config import ModelSpec
    from archbench.models import create_model
    from archbench.models.base import count_params

    real = count_params(create_model(ModelSpec(name="resnet18"), in_chans=3, num_classes=1000))["total"]
    (r18,) = [r for r in rows if r["name"] == "resnet18"]
    assert r18["params_224"] == real  # the meta-device count equals a real build's
    assert all(isinstance(r["imagenet_weights_local"], bool) for r in rows)


def test_models_table_and_no_match() -> None:
    res = runner.invoke(app, ["models", "tiny*", "--no-params"])
    assert res.exit_code == 0, res.output
    assert "tiny_cnn" in res.output and "none published" in res.output and "resnet" not in res.output
    res = runner.invoke(app, ["models", "no_such_model*"])
    assert res.exit_code == 1 and "no model matches" in res.output


def test_datasets_lists_every_registered_kind_with_what_it_reads() -> None:
    res = runner.invoke(app, ["datasets", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["kind"] for r in rows] == dataset_kinds()
    assert all(r["description"] and r["reads"] for r in rows), rows
    table = runner.invoke(app, ["datasets"])
    assert table.exit_code == 0 and "raster_patches" in table.output
