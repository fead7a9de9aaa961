"""The benchmark scripts' own logic: dataset splits and the U-Net FLOP count (no timing here)."""

from __future__ import annotations

import argparse
import sys

import pytest

from conftest import DSB, REPO

sys.path.insert(0, str(REPO / "bench"))
accuracy = pytest.importorskip("accuracy")
speed = pytest.importorskip("speed")


def _args(**kw):
    base = dict(data=None, train_split=None, test=None, dataset="dsb2018")
    return argparse.Namespace(**{**base, **kw})


def test_custom_split_and_test_folder(sim_dataset, tmp_path):
    names = sorted(p.stem for p in (sim_dataset / "train" / "images").glob("*.tif"))
    split = tmp_path / "split.txt"
    split.write_text("\n".join(f"{n}.tif" for n in names[:8]) + "\n")
    name, train, test = accuracy.resolve_dataset(_args(data=sim_dataset / "train", train_split=split), tmp_path)
    assert name == "train" and [p[0].stem for p in train] == names[:8]
    assert sorted(p[0].stem for p in test) == names[8:]  # the rest of the folder
    _, train, test = accuracy.resolve_dataset(_args(data=sim_dataset / "train", test=sim_dataset / "test"), tmp_path)
    assert len(train) == len(names) and len(test) == 3
    folder = accuracy.training_folder(train[:2], tmp_path / "t")
    assert sorted(p.name for p in (folder / "masks").iterdir()) == [p[0].name for p in train[:2]]
    split.write_text("nope.tif\n")
    with pytest.raises(SystemExit, match="nope.tif"):
        accuracy.resolve_dataset(_args(data=sim_dataset / "train", train_split=split), tmp_path)


@pytest.mark.skipif(not DSB.is_dir(), reason="../shared/data/dsb2018_dev not present")
def test_dsb_split_is_fixed_and_disjoint(tmp_path):
    name, train, test = accuracy.resolve_dataset(_args(), tmp_path)
    assert name == "dsb2018_dev" and len(test) == len(set(accuracy.DSB_TEST)) == 40
    assert not {p[0].stem for p in train} & set(accuracy.DSB_TEST) and len(train) + len(test) == 265


def test_unet_flops_count_by_hand():
    from ijseg.config import Config
    from ijseg.models.unet import build_unet

    model = build_unet(Config(data_target="binary", unet_depth=1, unet_base_filters=4, train_mixed_precision=False,
                              unet_top_convs=2))
    # per input pixel: level 0 convs 1->4, 4->4 and decoder 8->4, 4->4, 1x1 logits 4->1 at full
    # resolution; bottom 4->8, 8->8 at 1/4; the 2x2 stride-2 transposed conv 8->4 at full resolution
    macs = 9 * (1 * 4 + 4 * 4 + 8 * 4 + 4 * 4) + 4 * 1 + (9 * (4 * 8 + 8 * 8)) / 4 + 8 * 4
    assert speed.unet_flops(model) == pytest.approx(2 * macs)


def test_split_for_methods_without_an_ijseg_run_is_ijsegs(sim_dataset, tiny_model, tmp_path):
    import json

    mine = json.loads(accuracy.ijseg_split(sim_dataset / "train", tmp_path).read_text())
    theirs = json.loads((tiny_model / "split.json").read_text())
    for part in ("train", "validation"):
        assert [s["image"] for s in mine[part]] == [s["image"] for s in theirs[part]]
    assert mine["validation"] and not {s["image"] for s in mine["train"]} & {s["image"] for s in mine["validation"]}


@pytest.mark.slow
@pytest.mark.skipif(not accuracy.CELLPOSE_PYTHON.is_file(), reason="no Cellpose environment (bench/setup_cellpose.sh)")
def test_cellpose_runs_on_ijsegs_split(sim_dataset, tmp_path):
    """Cellpose 3 trains one short epoch in its own environment and segments the test images."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    split = accuracy.ijseg_split(sim_dataset / "train", run_dir)
    test = list(accuracy._pairs(sim_dataset / "test").values())
    r = accuracy.run_cellpose(split, test, 0.05, run_dir)
    assert r["epochs"] == 1 and r["n_true"] > 0 and 0 <= r["ap@0.5"] <= 1
    assert r["versions"]["cellpose"] == "3.1.1.3"


def test_speed_goal_rows_say_which_goals_are_met():
    r = {"inference": [{"size": 512, "ratio": 2.5, "ijseg_mp_s": 3.0, "post_measure_share": 0.1},
                       {"size": 2048, "ratio": 1.9, "ijseg_mp_s": 3.1, "post_measure_share": 0.25}],
         "roofline": {"fraction_of_tf_matmul": 0.5}, "bridge": {"ratio": 1.11},
         "bundle": {"size": 512, "max_abs_diff_onnx": 2e-6, "max_abs_diff_keras_v3": 2e-4}}
    rows = {line.split(" | ")[0].lstrip("| "): line.rstrip(" |").rsplit(" | ", 1)[1]
            for line in speed.goals(r).splitlines()[2:]}
    assert list(rows.values()) == ["yes", "no", "yes", "yes", "no", "no", "no"]  # the memory goal was not run
    assert not any(name.startswith("peak RSS") for name in rows)


def test_accuracy_goal_rows_compare_with_stardist_at_each_threshold():
    run = {"ap@0.5": 0.9, "ap@0.7": 0.8, "ap@0.9": 0.3, "n_params": 1_950_000}
    results = {"dataset": "sim3k-100", "minutes": 8, "methods": {
        "ijseg-default": run, "stardist": {"ap@0.5": 0.92, "ap@0.7": 0.7, "ap@0.9": 0.0}}}
    lines = accuracy.goals(results).splitlines()
    assert [line.rstrip(" |").rsplit(" | ", 1)[1] for line in lines[2:]] == ["no", "yes", "yes", "yes"]
    assert "| inf |" in lines[4]
    assert accuracy.goals({"dataset": "x", "minutes": 8, "methods": {"stardist": run}}) == ""
