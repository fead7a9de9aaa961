"""The command line, in-process and once as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ijseg.cli import main

TINY = ["--depth", "2", "--base-filters", "4", "--patch-size", "32", "--batch-size", "2", "--epochs", "1",
        "--steps-per-epoch", "1"]


def test_simulate_and_train(tmp_path, capsys):
    assert main(["-q", "simulate", "--preset", "sim3k-100", "--out", str(tmp_path / "d"), "--n-train", "4",
                 "--n-test", "1", "--size", "64", "--noise", "2", "--scale", "1.5"]) == 0
    assert "wrote 4 training + 1 test images" in capsys.readouterr().out
    meta = json.loads((tmp_path / "d" / "simulation.json").read_text())
    assert meta["params"]["noise"] == 2 and meta["params"]["shape"] == [64, 64]
    assert main(["-q", "train", "--data", str(tmp_path / "d" / "train"), "--model", str(tmp_path / "m"),
                 "--classes", "3", *TINY]) == 0
    assert "trained 1 epoch(s)" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["data_target"] == "3class" and cfg["unet_base_filters"] == 4 and cfg["n_params"] > 0


def test_config_file_and_flags(sim_dataset, tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"train_loss": "dice", "unet_residual": True,
                                                 "data_normalizer": {"name": "zscore"}}))
    assert main(["-q", "train", "--data", str(sim_dataset / "train"), "--model", str(tmp_path / "m"),
                 "--config", str(tmp_path / "c.json"), "--optimizer", "sgd", "--no-augment", *TINY]) == 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (cfg["train_loss"], cfg["unet_residual"], cfg["train_optimizer"], cfg["train_augment"]) == \
        ("dice", True, "sgd", False)
    assert cfg["data_normalizer"]["name"] == "zscore"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--val-fraction", "0.5"], "data_val_fraction must be <= 0.3"),
        (["--patch-size", "30"], "train_patch_size must be a multiple of 2**unet_depth = 32"),
        (["--classes", "5"], "--classes 5 with instance masks"),
        (["--loss", "hinge"], "train_loss must be 'auto' or one of"),
        (["--epochs", "0"], "train_epochs must be >= 1"),
    ],
)
def test_invalid_options_are_one_clear_line(sim_dataset, tmp_path, capsys, extra, message):
    code = main(["-q", "train", "--data", str(sim_dataset / "train"), "--model", str(tmp_path / "m"), *extra])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_config_file_errors(sim_dataset, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"unet_depht": 2, "train_epoch": 3}))
    assert main(["train", "--data", str(sim_dataset / "train"), "--model", str(tmp_path / "m"),
                 "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.json" in err and "unknown key 'unet_depht'" in err and "unknown key 'train_epoch'" in err
    assert main(["train", "--data", "x", "--model", "y", "--config", str(tmp_path / "none.json")]) == 1
    assert "none.json: configuration file not found" in capsys.readouterr().err


def test_data_errors_and_resume_rules(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--model", str(tmp_path / "m")]) == 1
    assert "nope: dataset folder not found" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--model", str(tmp_path / "m"), "--resume", "--depth", "2"]) == 1
    assert "remove --depth" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--model", str(tmp_path / "m"), "--resume"]) == 1
    assert "nothing to resume" in capsys.readouterr().err


def test_simulate_bad_values(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "s"), "--touching", "3"]) == 1
    assert "touching must be in [0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--out", str(tmp_path), "--preset", "nope"])
    assert e.value.code == 2


def test_simulate_volumes(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["-q", "simulate", "--preset", "sim3d", "--out", str(out), "--n-train", "2", "--n-test", "1",
                 "--size", "48", "--depth", "8"]) == 0
    assert "wrote 2 training + 1 test volumes" in capsys.readouterr().out
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["params"]["shape"] == [8, 48, 48] and meta["voxel_size_um"] == [1.25, 0.5, 0.5]
    assert main(["simulate", "--out", str(tmp_path / "f"), "--depth", "8"]) == 1
    assert "--depth applies to 3-D presets; sim2k-10 makes 2-D images" in capsys.readouterr().err


def test_doctor(capsys):
    import numpy
    import tifffile

    import ijseg

    assert main(["doctor", "--no-tensorflow"]) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.strip())
    assert rows["ijseg"] == ijseg.__version__
    assert rows["numpy"] == numpy.__version__ and rows["tifffile"] == tifffile.__version__
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    assert rows["java"].startswith(java)
    assert rows["imagej"].startswith("ImageJ 1.") and rows["imagej"].rstrip(")").endswith(".jar")


def test_subprocess_smoke():
    out = subprocess.run([sys.executable, "-m", "ijseg", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ijseg ")
    r = subprocess.run([sys.executable, "-m", "ijseg", "train", "--data", "/nonexistent", "--model", "/tmp/x"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip() == "ijseg train: error: /nonexistent: dataset folder not found"


def test_a_time_limit_alone_lets_the_budget_end_training(tmp_path):
    from ijseg.cli import EPOCHS_UNTIL_TIME_LIMIT, _train_config, build_parser

    def config(*extra):
        return _train_config(build_parser().parse_args(["train", "--data", "d", "--model", "m", *extra]))

    assert config("--time-limit", "8").train_epochs == EPOCHS_UNTIL_TIME_LIMIT
    assert config("--time-limit", "8", "--epochs", "5").train_epochs == 5
    assert config().train_epochs == 100
    (tmp_path / "c.json").write_text(json.dumps({"train_epochs": 7}))
    assert config("--time-limit", "8", "--config", str(tmp_path / "c.json")).train_epochs == 7
    assert config("--lr-schedule", "plateau").train_lr_schedule == "plateau"


def test_only_the_executable_freezes_what_lives_until_the_end():
    """The executable moves TensorFlow's objects out of the collector's way (ijseg._gc); a
    program using ijseg as a library keeps its collector untouched."""
    code = (
        "import gc, sys\n"
        "import ijseg._gc as g, ijseg._tf as t\n"
        "if sys.argv[1] == 'executable':\n"
        "    g.own_process()\n"
        "t.import_tf()\n"
        "g.settle_once('x'); frozen = gc.get_freeze_count(); g.settle_once('x')\n"
        "print(gc.get_freeze_count(), frozen, gc.isenabled())\n"
    )
    runs = {}
    for mode in ("executable", "library"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True)
        runs[mode] = [int(v) if v.isdigit() else v for v in out.stdout.split()]
    count, first, enabled = runs["executable"]
    assert count > 100_000 and count == first and enabled == "True"  # settle_once acted once
    assert runs["library"] == [0, 0, "True"]


def test_overlapping_quiet_blocks_restore_stderr_and_the_collector():
    """TensorFlow's import (in a model's preload thread) and the JVM's start may silence file
    descriptor 2 and pause the collector at the same time, and end in either order: the last one
    to end restores both, and a message waiting for the quiet blocks reaches the real stderr."""
    code = (
        "import gc, os, sys, threading, time\n"
        "import ijseg._gc as g, ijseg._stderr as s\n"
        "g.own_process()\n"
        "inside, leave = threading.Event(), threading.Event()\n"
        "def other():\n"
        "    with s.quiet_fd2(), g.loading():\n"
        "        inside.set(); leave.wait()\n"
        "t = threading.Thread(target=other); t.start(); inside.wait()\n"
        "with s.quiet_fd2(), g.loading():\n"
        "    os.write(2, b'lost 1\\n')\n"
        "    t0 = time.monotonic()\n"
        "    with s.loud():  # inside its own quiet block a thread does not wait for itself\n"
        "        assert time.monotonic() - t0 < 5\n"
        "os.write(2, b'lost 2\\n')  # the other block is still open\n"
        "print(gc.isenabled(), flush=True)\n"
        "threading.Timer(0.3, leave.set).start()\n"
        "with s.loud():  # waits for the other block, then writes where it is seen\n"
        "    os.write(2, b'kept\\n')\n"
        "t.join(); print(gc.isenabled())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stderr == "kept\n"
    assert out.stdout.split() == ["False", "True"]
