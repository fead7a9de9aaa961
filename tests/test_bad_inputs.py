"""Bad input through the real command line, as a careful new user would try it.

Each case runs ``ijseg`` in a subprocess and checks what the user sees and what is left
behind: the exit code; exactly one error line, naming the file or option and the problem; no
traceback; no temporary or partial output; no stray process (Xvfb, Java). The ImageJ cases
start their own JVM in the child process.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import orphaned_xvfb, xvfb_pids

IJSEG = str(Path(sys.executable).with_name("ijseg"))


@dataclass
class Case:
    argv: list[str]
    code: int
    says: list[str]  # substrings of the one error line
    absent: list[Path] = field(default_factory=list)  # outputs that must not exist afterwards
    stdin: str | None = None


def _run(case: Case, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    before = xvfb_pids()
    proc = subprocess.Popen([IJSEG, *case.argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, stdin=subprocess.PIPE if case.stdin is not None else subprocess.DEVNULL)
    out, err = proc.communicate(case.stdin, timeout=timeout)
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    for _ in range(40):  # Xvfb gets SIGTERM when ijseg ends; give it a moment
        stray = orphaned_xvfb(xvfb_pids() - before, proc.pid)
        if not stray:
            break
        time.sleep(0.1)
    assert not stray, f"Xvfb left running: {stray}"
    return r


def _check(case: Case, r: subprocess.CompletedProcess, root: Path) -> None:
    err = r.stderr
    assert "Traceback" not in err and "Traceback" not in r.stdout, err
    assert r.returncode == case.code, (r.returncode, err)
    lines = [ln for ln in err.splitlines() if " error: " in ln or ln.startswith("error:")]
    assert len(lines) == 1, err
    for s in case.says:
        assert s in lines[0], (s, lines[0])
    leftovers = [p for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith("hs_err")]
    assert not leftovers, leftovers
    for p in case.absent:
        assert not p.exists(), f"{p} was left behind"


def _check_listed(case: Case, r: subprocess.CompletedProcess, root: Path) -> None:
    """A job over many images: each failed image is one line of the final list, naming it."""
    err = r.stderr
    assert "Traceback" not in err and r.returncode == case.code, err
    listed = [ln for ln in err.split("image(s) failed:\n", 1)[1].splitlines()
              if not ln.startswith("    ")]  # an entry may quote the macro line below it
    assert len(listed) == 1 and all(s in listed[0] for s in case.says), err
    assert not [p for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith("hs_err")]


@pytest.fixture(scope="module")
def env(sim_dataset, tiny_model, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    good = sorted((sim_dataset / "test" / "images").glob("*.tif"))
    raw = good[0].read_bytes()
    files = root / "files"
    files.mkdir()
    (files / "trunc.tif").write_bytes(raw[: len(raw) // 3])
    (files / "text.tif").write_text("not an image")
    (files / "empty.tif").write_bytes(b"")
    tifffile.imwrite(files / "huge.tif", np.zeros((10, 10), np.uint8))
    with tifffile.TiffFile(files / "huge.tif", mode="r+") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(200000)
        tif.pages[0].tags["ImageLength"].overwrite(200000)
    tifffile.imwrite(files / "float_labels.tif", np.full((32, 32), 1.5, np.float32))
    tifffile.imwrite(files / "labels.tif", np.pad(np.ones((8, 8), np.uint16), 12))
    tifffile.imwrite(files / "small.tif", np.arange(4, dtype=np.uint8).reshape(2, 2))
    (files / "not_a_folder").write_text("x")
    mixed = root / "mixed"
    mixed.mkdir()
    for i in range(5):  # five good images
        shutil.copy(good[i % len(good)], mixed / f"good{i}.tif")
    shutil.copy(files / "trunc.tif", mixed / "trunc.tif")
    # class masks holding the value 7 where the configuration says 2 classes
    classes = root / "classes"
    shutil.copytree(sim_dataset / "train", classes)
    for m in (classes / "masks").glob("*.tif"):
        tifffile.imwrite(m, (tifffile.imread(m) > 0).astype(np.uint8) * 7)
    macros = root / "macros"
    macros.mkdir()
    (macros / "invert.ijm").write_text('run("Invert");\n')
    (macros / "predict_no_image.ijm").write_text(f'run("IJSeg Predict", "model=[{tiny_model}]");\n')
    (macros / "open_text.ijm").write_text(f'open("{files / "text.tif"}");\nprint(getTitle());\n')
    (macros / "dialog.ijm").write_text('run("Gaussian Blur...");\n')
    (macros / "loop_forever.ijm").write_text('while (true) { x = 1; }\n')
    (macros / "loop.ijm").write_text('if (getTitle() == "0001.tif") while (true) { x = 1; }\nrun("Invert");\n')
    (macros / "param.ijm").write_text('#@ Integer (value=3) n\nprint(n);\n')
    (macros / "open_param.ijm").write_text('#@ File image\nopen(image);\nprint(getTitle());\n')
    (macros / "latin1.ijm").write_bytes('// Zellkerne zählen (Windows)\nprint("Größe: µm");\n'.encode("latin-1"))
    return {"root": root, "files": files, "good": good[0], "images": good[0].parent, "mixed": mixed,
            "classes": classes, "macros": macros, "model": tiny_model, "data": sim_dataset}


def _cases(e: dict[str, Path]) -> dict[str, Case]:
    f, m, r = e["files"], e["macros"], e["root"]
    model, img, images = str(e["model"]), str(e["good"]), str(e["images"])
    out = r / "out"
    proc = "/proc/ijseg-out"
    train = ["train", "--data", str(e["data"] / "train"), "--epochs", "1", "--steps-per-epoch", "1",
             "--depth", "2", "--base-filters", "4", "--patch-size", "32"]
    predict = ["predict", "--model", model, "--input", img]
    return {
        # train
        "train-no-data": Case(["train", "--data", str(r / "nope"), "--model", str(out)], 1, ["nope", "not found"],
                              [out]),
        "train-model-in-proc": Case([*train, "--model", proc], 1, [proc, "not writable"]),
        "train-model-is-file": Case([*train, "--model", str(f / "not_a_folder")], 1,
                                    ["not_a_folder", "a file of that name exists"]),
        "train-class-range": Case(["train", "--data", str(e["classes"]), "--model", str(out), "--mask-type", "class",
                                   "--classes", "2", *train[3:]], 1, ["masks", "outside the class range"]),
        "train-config-missing": Case([*train, "--model", str(out), "--config", str(r / "none.json")], 1,
                                     ["none.json", "not found"], [out]),
        "train-config-not-json": Case([*train, "--model", str(out), "--config", str(f / "not_a_folder")], 1,
                                      ["not_a_folder", "not valid JSON"], [out]),
        "train-resume-nothing": Case([*train[:3], "--model", str(out), "--resume"], 1, ["nothing to resume"]),
        "train-bad-val-fraction": Case([*train, "--model", str(out), "--val-fraction", "0.9"], 1,
                                       ["data_val_fraction"], [out]),
        "train-existing-model": Case([*train, "--model", model], 1, [model, "already holds a model", "(--overwrite, --resume)"]),
        # predict
        "predict-no-input": Case(["predict", "--model", model, "--input", str(r / "nope.tif"), "--out", str(out)],
                                 1, ["nope.tif", "not found"], [out]),
        "predict-no-model": Case(["predict", "--model", str(r / "nomodel"), "--input", img, "--out", str(out)], 1,
                                 ["nomodel", "model not found"], [out]),
        "predict-not-a-model": Case(["predict", "--model", str(e["images"]), "--input", img, "--out", str(out)], 1,
                                    [images], [out]),
        "predict-out-is-file": Case([*predict, "--out", str(f / "not_a_folder")], 1,
                                    ["not_a_folder", "a file of that name exists"]),
        "predict-out-in-proc": Case([*predict, "--out", proc], 1, [proc, "not writable"]),
        "predict-out-under-file": Case([*predict, "--out", str(f / "not_a_folder" / "sub")], 1,
                                       ["not_a_folder", "is a file"]),
        "predict-tile-negative": Case([*predict, "--out", str(out), "--tile", "-5"], 2, ["--tile", "-5"], [out]),
        "predict-tile-too-small": Case([*predict, "--out", str(out), "--tile", "7"], 1, ["--tile", "at least"],
                                       [out]),
        "predict-tile-not-a-number": Case([*predict, "--out", str(out), "--tile", "big"], 2, ["--tile", "big"],
                                          [out]),
        "predict-threshold": Case([*predict, "--out", str(out), "--threshold", "1.5"], 1, ["threshold", "1.5"],
                                  [out]),
        "predict-truncated": Case(["predict", "--model", model, "--input", str(f / "trunc.tif"), "--out", str(out)],
                                  1, ["trunc.tif", "truncated"], [out]),
        "predict-huge-header": Case(["predict", "--model", model, "--input", str(f / "huge.tif"), "--out", str(out)],
                                    1, ["huge.tif", "200000 x 200000", "GiB"], [out]),
        "predict-not-an-image": Case(["predict", "--model", model, "--input", str(f / "text.tif"), "--out",
                                      str(out)], 1, ["text.tif", "not a readable TIFF"], [out]),
        "predict-empty-file": Case(["predict", "--model", model, "--input", str(f / "empty.tif"), "--out", str(out)],
                                   1, ["empty.tif", "empty"], [out]),
        "predict-too-small": Case(["predict", "--model", model, "--input", str(f / "small.tif"), "--out", str(out)],
                                  1, ["small.tif", "smaller than"], [out]),
        "predict-folder-without-images": Case(["predict", "--model", model, "--input", str(m), "--out", str(out)], 1,
                                              [str(m), "no images found"], [out]),
        # qc
        "qc-out-is-file": Case(["qc", "--model", model, "--data", str(e["data"] / "test"), "--out",
                                str(f / "not_a_folder")], 1, ["not_a_folder", "a file of that name exists"]),
        "qc-no-data": Case(["qc", "--model", model, "--data", str(r / "nope"), "--out", str(out)], 1,
                           ["nope", "not found"], [out]),
        "qc-no-model": Case(["qc", "--model", str(r / "nomodel"), "--data", str(e["data"] / "test"), "--out",
                             str(out)], 1, ["nomodel", "not found"], [out]),
        # measure
        "measure-out-is-folder": Case(["measure", "--labels", str(f / "labels.tif"), "--out", str(f)], 1,
                                      [str(f), "is a folder"]),
        "measure-no-labels": Case(["measure", "--labels", str(r / "nope.tif"), "--out", str(r / "t.csv")], 1,
                                  ["nope.tif", "not found"], [r / "t.csv"]),
        "measure-float-labels": Case(["measure", "--labels", str(f / "float_labels.tif"), "--out", str(r / "t.csv")],
                                     1, ["float_labels.tif", "non-integer"], [r / "t.csv"]),
        "measure-size-mismatch": Case(["measure", "--labels", str(f / "labels.tif"), "--intensity",
                                       str(f / "small.tif"), "--out", str(r / "t.csv")], 1, ["small.tif", "axes and size"],
                                      [r / "t.csv"]),
        "measure-out-in-proc": Case(["measure", "--labels", str(f / "labels.tif"), "--out", proc + ".csv"], 1,
                                    [proc, "not writable"]),
        # export
        "export-out-in-proc": Case(["export", "--model", model, "--out", proc + ".zip"], 1, [proc, "not writable"]),
        "export-out-is-folder": Case(["export", "--model", model, "--out", str(f)], 1, [str(f), "is a folder"]),
        "export-no-model": Case(["export", "--model", str(r / "nomodel"), "--out", str(r / "b.zip")], 1,
                                ["nomodel"], [r / "b.zip"]),
        # simulate
        "simulate-out-is-file": Case(["simulate", "--out", str(f / "not_a_folder"), "--n-train", "1", "--n-test",
                                      "0"], 1, ["not_a_folder", "a file of that name exists"]),
        "simulate-touching": Case(["simulate", "--out", str(out), "--touching", "3"], 1, ["touching"], [out]),
        "simulate-no-images": Case(["simulate", "--out", str(out), "--n-train", "0", "--n-test", "0"], 1, [], [out]),
        # check, fiji
        "check-no-bundle": Case(["check", str(r / "nope.zip")], 1, ["nope.zip"]),
        "fiji-install-no-fiji": Case(["fiji", "install", str(r / "Fiji.app")], 1, ["Fiji.app"]),
        # macro (no JVM needed for these)
        "macro-run-no-file": Case(["macro", "run", str(m / "nope.ijm")], 1, ["nope.ijm", "not found"]),
        "macro-run-arg-syntax": Case(["macro", "run", str(m / "param.ijm"), "--arg", "n"], 1, ["--arg", "NAME=VALUE"]),
        "macro-run-unknown-arg": Case(["macro", "run", str(m / "param.ijm"), "--arg", "k=1"], 1,
                                      ["param.ijm", "unknown parameter 'k'"]),
        "macro-run-bad-number": Case(["macro", "run", str(m / "param.ijm"), "--arg", "n=three"], 1,
                                     ["param.ijm", "needs a number"]),
        "macro-batch-out-in-proc": Case(["macro", "batch", str(m / "invert.ijm"), "--input", images, "--out", proc],
                                        1, [proc, "not writable"]),
        "macro-batch-no-input": Case(["macro", "batch", str(m / "invert.ijm"), "--input", str(r / "nope"), "--out",
                                      str(out)], 1, ["nope", "not found"], [out]),
        "macro-batch-bad-timeout": Case(["macro", "batch", str(m / "invert.ijm"), "--input", images, "--out", str(out),
                                         "--timeout", "0"], 1, ["--timeout"], [out]),
        # macro in ImageJ
        "macro-predict-without-image": Case(["macro", "run", str(m / "predict_no_image.ijm")], 1,
                                            ["predict_no_image.ijm", "line 1", "no image is open"]),
        "macro-open-not-an-image": Case(["macro", "run", str(m / "open_text.ijm")], 1,
                                        ["open_text.ijm", "line 2", "no image open"]),
        "macro-run-truncated-parameter": Case(["macro", "run", str(m / "open_param.ijm"), "--arg",
                                               f"image={f / 'trunc.tif'}"], 1, ["--arg image", "trunc.tif", "truncated"]),
        "macro-run-timeout": Case(["macro", "run", str(m / "loop_forever.ijm"), "--timeout", "2"], 1,
                                  ["loop_forever.ijm", "line 1", "did not finish within 2 s"]),
        "macro-batch-dialog": Case(["macro", "batch", str(m / "dialog.ijm"), "--input", img, "--out", str(out)], 1,
                                   ["dialog.ijm", "line 1", "Gaussian Blur", "dialog"]),
    }


CASE_IDS = list(_cases({k: Path("/x") for k in ("files", "macros", "root", "model", "good", "images", "mixed",
                                                   "classes", "data")}))


@pytest.mark.parametrize("name", CASE_IDS)
def test_bad_input(env, name, tmp_path):
    case = _cases(env)[name]
    r = _run(case, cwd=tmp_path)
    _check(case, r, env["root"])
    leftovers = list(tmp_path.iterdir())
    assert not leftovers, leftovers  # nothing in the working directory (hs_err_pid*.log, ...)


def test_there_are_enough_cases():
    assert len(CASE_IDS) >= 40


def _summary_images(path: Path) -> list[str]:
    return [line.split(",")[0] for line in path.read_text().splitlines()[1:]]


def test_batch_with_a_truncated_tiff_reports_it_and_does_the_rest(env, tmp_path):
    """The issue's job: 5 good images and the first third of a real TIFF; no display needed."""
    out = tmp_path / "out"
    case = Case(["macro", "batch", str(env["macros"] / "invert.ijm"), "--input", str(env["mixed"]), "--out", str(out)],
                1, ["trunc.tif", "truncated"])
    t0 = time.monotonic()
    r = _run(case, cwd=tmp_path, timeout=60)
    assert time.monotonic() - t0 < 60
    _check_listed(case, r, tmp_path)
    good = sorted(p.name for p in env["mixed"].glob("*.tif") if p.name != "trunc.tif")
    assert _summary_images(out / "summary.csv") == good
    assert sorted(p.name for p in out.glob("*.tif")) == good


def test_batch_timeout_skips_the_image_and_goes_on(env, tmp_path):
    out = tmp_path / "out"
    case = Case(["macro", "batch", str(env["macros"] / "loop.ijm"), "--input", str(env["images"]), "--out", str(out),
                 "--timeout", "3"], 1, ["0001.tif", "did not finish within 3 s", "line 1"])
    _check_listed(case, _run(case, cwd=tmp_path), tmp_path)
    names = sorted(p.name for p in env["images"].glob("*.tif"))
    assert _summary_images(out / "summary.csv") == [n for n in names if n != "0001.tif"]


def test_predict_folder_with_a_bad_file_writes_the_summary_of_the_rest(env, tmp_path):
    out = tmp_path / "out"
    case = Case(["predict", "--model", str(env["model"]), "--input", str(env["mixed"]), "--out", str(out)], 1,
                ["trunc.tif", "truncated"])
    r = _run(case, cwd=tmp_path)
    # the per-image line is "skipped: ..." in the log, and repeated in the final list
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "trunc.tif: the file is truncated" in r.stderr
    good = sorted(p.name for p in env["mixed"].glob("*.tif") if p.name != "trunc.tif")
    assert sorted(line.split(",")[0] for line in (out / "summary.csv").read_text().splitlines()[1:]) == good
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_latin1_macro_runs(env, tmp_path):
    r = subprocess.run([IJSEG, "macro", "run", str(env["macros"] / "latin1.ijm")], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Größe: µm" in r.stdout


def test_quiet_and_verbose_anywhere(env, tmp_path):
    out = tmp_path / "p"
    r = subprocess.run([IJSEG, "predict", "--model", str(env["model"]), "--input", str(env["good"]), "--out", str(out),
                        "-q"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # -q after the command: no progress bar, no info line
    r = subprocess.run([IJSEG, "doctor", "--no-tensorflow", "-v"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
