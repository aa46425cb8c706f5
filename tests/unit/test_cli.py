"""The command line (``python -m robust_transfer``): parameters as the notebooks take them, a tiny
sweep and its status, the cost estimate (counts, calibration) and the paper preset offline."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from robust_transfer import build, cli, config, cost, transfer

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--preset", "tiny", "--set", 'targets=["digits"]', "--set", "n_values=[10]",
        "--set", 'sources=["tiny/fmnist/natural/s0"]', "--set", "seeds=[0]",
        "--set", "compare_recipe=", "--set", "block_counts=[]",
        "--set", "shape_targets=[]"]  # the main grid only (no Section 2 transfer runs)


def _all_line(text: str) -> list[str]:
    """The fields of the status table's "all" line: total, done, missing, failed."""
    line = next(ln for ln in text.splitlines() if ln.startswith("all "))
    return line.split()[1:]


def test_bad_values_exit_2_naming_the_parameter_before_any_compute(capsys, monkeypatch):
    monkeypatch.setattr(cli.sweep, "grid", lambda cfg: pytest.fail("computed with a bad value"))
    for argv, name in [(["status", "--preset", "tiny", "--set", "epochs=abc"], "epochs"),
                       (["sweep", "--preset", "tiny", "--set", "n_values=[5000]"], "n_values"),
                       (["status", "--preset", "tiny", "--set", "colour=red"], "colour"),
                       (["status", "--preset", "huge"], "preset"),
                       (["status", "--set", "targets"], "KEY=VALUE"),
                       (["sweep", "--preset", "tiny", "--workers", "0"], "--workers"),
                       (["sweep", "--preset", "tiny", "--scheduler", "tcp://x:1",
                         "--executor", "serial"], "--scheduler")]:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "error:" in err and name in err, (argv, err)


@pytest.mark.slow  # a fresh interpreter importing torch
def test_python_m_entry_point_reports_a_bad_value():
    out = subprocess.run([sys.executable, "-m", "robust_transfer", "status", "--preset", "tiny",
                          "--set", "lr=-1"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert "lr=-1" in out.stderr and "(0, 10]" in out.stderr


def test_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["robust-transfer"] == "robust_transfer.cli:main"


def test_config_file_and_set_give_the_same_config_as_resolve(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("preset: tiny\ntargets: [digits]\nn_values: [10, 40]\nseeds: [3]\n")
    args = cli.parser().parse_args(["status", "--config", str(params), "--set", "epochs=2",
                                    "--set", "n_values=[10]"])
    cfg = cli.resolve_args(args)
    assert cfg == config.resolve("tiny", targets=["digits"], n_values=[10], seeds=[3], epochs=2)
    # --preset wins over the file's preset
    args = cli.parser().parse_args(["status", "--config", str(params), "--preset", "mini"])
    assert cli.resolve_args(args).preset == "mini"
    assert cli.parameters(None, ["targets=[digits]", "lr=0.5"]) == (
        "mini", {"targets": "[digits]", "lr": "0.5"})
    params.write_text("- a list\n")
    assert cli.main(["status", "--config", str(params)]) == 2


def test_tiny_sweep_then_status_reports_it_complete(tmp_path, capsys):
    store = ["--store", str(tmp_path / "store")]
    assert cli.main(["status", *TINY, *store, "--calibration-seconds", "0.5"]) == 0
    before = capsys.readouterr().out
    assert _all_line(before) == ["2", "0", "2", "0"]
    assert "calibration: resnet8" in before and "estimate:" in before
    assert re.search(r"training images +60 ", before)  # n = 10 x 3 epochs x 2 runs
    assert cli.main(["sweep", *TINY, *store, "--no-calibrate", "--executor", "serial"]) == 0
    out = capsys.readouterr().out
    assert "ran 2 runs; 2 of 2 done, 0 missing" in out
    assert cli.main(["status", *TINY, *store]) == 0
    after = capsys.readouterr().out
    assert _all_line(after) == ["2", "2", "0", "0"]
    assert "nothing missing" in after
    # a second sweep has nothing left to do
    assert cli.main(["sweep", *TINY, *store, "--no-calibrate"]) == 0
    assert "nothing to run" in capsys.readouterr().out


def test_status_paper_preset_offline_calibrates_and_estimates(capsys):
    """ResNet-50 at 224 px with random weights, two images per step, about a second."""
    assert cli.main(["status", "--preset", "paper", "--calibration-batch", "2",
                     "--calibration-seconds", "0.5"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"calibration: resnet50 with random weights on \S+ .*3x\d+ px -> 3x224 px, "
                     r"batch 2", out)
    assert "augmentation included" in out
    assert re.search(r"estimate: [\d,.]+ (CPU core|device)-hours", out)
    # runs; n x epochs summed over the grid: 10 seeds up to 6,400 images, 5 above, 1 full set;
    # 100 epochs up to 1,600 images, 150 above
    assert "7,776" in out and "5,278,216,800" in out
    # Section 2: the authors' Food-101 grid (64 runs of 150 epochs), counted and estimated too
    assert "7,840" in out and "133,380,000" in out
    assert re.search(r"per section: Section 1 [\d,.]+ h; Section 2 [\d,.]+ (h|min)", out)


def test_book_command_forwards_to_the_build(monkeypatch):
    calls = []
    monkeypatch.setattr(build, "main", calls.append)
    assert cli.main(["book", "--preset", "tiny", "--out", "x", "--only", "00_data"]) == 0
    assert calls == [["--preset", "tiny", "--out", "x", "--only", "00_data"]]
    assert cli.main(["book", "--preset", "tiny", "--out", "x", "--jobs", "1"]) == 0
    assert calls[-1] == ["--preset", "tiny", "--out", "x", "--jobs", "1"]


def test_counts_and_estimate_add_up_the_passes():
    cfg = config.resolve("tiny", targets=["digits"], epochs=2, val_size=50, augment=True)
    assert not transfer.use_fast_path(cfg)
    runs = [dict(source="tiny/fmnist/natural/s0", target="digits", unfrozen_blocks=k, n=n)
            for k in (0, 1) for n in (10, 40)]
    sizes = {"digits": (1000, 300)}
    c = cost.counts(cfg, runs, sizes)
    assert c["runs"] == 4 and c["epochs"] == 8
    assert c["train_images"] == 2 * (10 + 40) * 2 and c["init_images"] == 100
    # validation after every epoch and before the first; the test set at the curve epochs 0, 1, 2
    assert c["val_images"] == 4 * 50 * 3 and c["test_images"] == 4 * 300 * 3
    assert c["prefix_images"] == 0
    cal = cost.Calibration(arch="resnet8", device="cpu", input="", batch=1, augment=True,
                           k_measured=1, reps=1, seconds=0, augment_s=1.0,
                           forward_s=[1.0, 2.0, 3.0, 4.0, 0.5], backward_ratio=2.0)
    assert cal.train_image(0) == 1.0 + 10.5 + 2 * 0.5 and cal.train_image(1, fast=True) == 13.5
    expected = sum(r["n"] * 2 * cal.train_image(r["unfrozen_blocks"])
                   + (r["n"] + 50 * 3 + 300 * 3) * 10.5 for r in runs)
    assert cost.estimate(cfg, runs, sizes, {"resnet8": cal}) == pytest.approx(expected)
    fast = config.resolve("tiny", targets=["digits"], epochs=2, val_size=50)
    cf = cost.counts(fast, runs, sizes)
    assert cf["prefix_images"] == 2 * 1300  # once per (source, target, k)


def test_calibration_times_each_block_and_leaves_threads_and_rng_alone():
    import torch
    threads = torch.get_num_threads()
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    cal = cost.calibrate("resnet8", in_channels=1, image_size=28, target_channels=3,
                         target_size=32, augment=True, k=2, batch=8, seconds=0.2)
    assert torch.rand(1) == expected and torch.get_num_threads() == threads
    assert cal.num_blocks == 3 and cal.k_measured == 2 and cal.reps >= 1
    assert all(t > 0 for t in cal.forward_s) and cal.augment_s > 0 and cal.backward_ratio > 0
    assert cal.input == "3x32 px -> 1x28 px" and cal.device.startswith("cpu")
    assert cal.train_image(3) > cal.train_image(0) > cal.train_image(0, fast=True)


def test_version_and_status_json(tmp_path, capsys):
    import json
    from robust_transfer import __version__
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and __version__ in capsys.readouterr().out
    assert cli.main(["status", *TINY, "--store", str(tmp_path / "s"), "--no-calibrate",
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["runs"] == doc["missing"] == 2 and doc["done"] == 0
    assert doc["cells"][0]["source"] == "tiny/fmnist/natural/s0" and doc["estimate_seconds"] is None
    assert doc["cost"]["train_images"] == 60


def test_a_failed_download_says_so_without_a_traceback(monkeypatch, tmp_path, capsys):
    import urllib.error
    from robust_transfer import data

    def offline(name, root):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(data, "_download", offline)
    monkeypatch.setenv("RT_DATA_DIR", str(tmp_path))
    assert cli.main(["status", "--preset", "tiny", "--set", 'targets=["svhn"]',
                     "--set", "allow_download=true", "--set", "block_targets=[]",
                     "--set", "influence_targets=[]", "--set", "shape_targets=[]",
                     "--no-calibrate"]) == 0   # status never downloads
    capsys.readouterr()
    assert cli.main(["sweep", "--preset", "tiny", "--set", 'targets=["svhn"]',
                     "--set", "allow_download=true", "--set", "block_targets=[]",
                     "--set", "influence_targets=[]", "--set", "shape_targets=[]",
                     "--no-calibrate"]) == 1
    err = capsys.readouterr().err
    assert "dataset 'svhn' is not on this machine" in err and "downloading it failed" in err
    assert "URLError" in err and "Traceback" not in err
