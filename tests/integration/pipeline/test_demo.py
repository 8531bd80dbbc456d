"""`stream-ad demo` and `stream-ad run` as a user runs them: real stage processes, real files, real sockets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_ad.calibration.bounds import allowed_false_alarms, fpr_upper_bound
from stream_ad.calibration.calibrate import ordinal
from stream_ad.cli import main
from stream_ad.commands.demo import DEMO_FOLDS
from stream_ad.settings import load_settings
from tests.integration.conftest import (
    CATEGORY,
    DEMO_TARGET_FPR,
    DemoRun,
    cli,
    write_pipeline,
)

TEST_IMAGES = sum(1 for p in (CATEGORY / "test").rglob("*.png"))
GOOD_IMAGES = sum(1 for p in (CATEGORY / "train" / "good").iterdir())


def test_demo_streams_every_test_image_through_the_stages(demo_run: DemoRun) -> None:
    err, out, summary = demo_run.proc.stderr, demo_run.proc.stdout, demo_run.summary
    # The threshold is cross-fitted (the demo's default): every good image scored by a model fitted without it.
    k = allowed_false_alarms(GOOD_IMAGES, DEMO_TARGET_FPR, 0.95)
    assert k is not None and k > 0  # 32 images allow false alarms at 35 %: the threshold is no longer the highest
    assert (f"calibrated: the {ordinal(k + 1)} highest score of {GOOD_IMAGES} good images of {CATEGORY}/train/good, "
            f"each scored by a model fitted on the other {DEMO_FOLDS - 1} of {DEMO_FOLDS} folds") in err
    assert (f"with 95% confidence the false-alarm rate on good parts is at most "
            f"{fpr_upper_bound(k, GOOD_IMAGES, 0.95):.4f}") in out
    assert f"{DEMO_FOLDS} folds cross-fitted for calibration (fits {DEMO_FOLDS + 1} models)" in err
    assert "source -> preprocess -> infer -> decide -> sink" in err
    # A live progress line, then the summary table.
    assert "fps" in err and "p99" in err and "in flight" in err
    assert "pipeline summary" in out and "latency p50 / p90 / p99 / max" in out
    assert "verdicts against the folder labels" in out
    # Every frame the camera gave ends scored or dropped with a reason.
    assert summary["frames_in"] == TEST_IMAGES
    assert summary["scored"] + summary["dropped_total"] == TEST_IMAGES
    assert summary["unaccounted"] == 0 and summary["in_flight_at_end"] == 0
    assert summary["scored"] >= TEST_IMAGES // 2
    assert abs(summary["source_fps"] - 20) < 2.0  # the camera ran at its rate


def test_demo_runs_a_short_tune_and_points_to_what_it_wrote(demo_run: DemoRun) -> None:
    """The tune step tries the settings' own configuration (the fixture's coreset ratio 0.05) against resize 320 on
    synthetic defects and says what it chose, why, and where it wrote the pipeline YAML and the report."""
    err, out = demo_run.proc.stderr, demo_run.proc.stdout
    default = "patchcore resize 224 ratio 0.05 taps features.6+features.13 score map top 1%"  # the settings' own
    assert f"tuning (short demo step: {default} against resize 320" in err
    [line] = [line for line in out.splitlines() if line.startswith("tune (short demo step, ")]
    tune_dir = demo_run.output_dir / "demo" / "tune"
    assert f"settings {tune_dir / 'pipeline.yaml'}, report {tune_dir / 'tune_report.md'}" in line
    report = json.loads((tune_dir / "tune_report.json").read_text())
    assert report["default"] == default and "synthetic defects" in report["defects"]
    assert [r["name"] for r in report["candidates"]] == [report["default"], "patchcore resize 320 ratio 0.05"]
    chosen = next(r for r in report["candidates"] if r["chosen"])
    assert f": {chosen['name']}; settings" in line and f"({chosen['why']})" in err
    assert report["candidates"][1]["versus_default"]["low"] <= report["candidates"][1]["versus_default"]["high"]
    written = load_settings(tune_dir / "pipeline.yaml")
    assert (written.preprocess.image_size, written.scorer.params["coreset_ratio"]) == (
        int(chosen["name"].split()[2]), 0.05)


def test_demo_verdict_log_and_sinks(demo_run: DemoRun) -> None:
    verdicts = demo_run.verdicts
    assert len(verdicts) == demo_run.summary["scored"]
    ids = [v["frame_id"] for v in verdicts]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)  # once each, in camera order
    assert {v["run_id"] for v in verdicts} == {demo_run.summary["run_id"]}  # the run that judged them
    for v in verdicts:
        assert set(v) >= {"frame_id", "camera", "t_capture", "t_verdict", "latency_ms", "score", "threshold",
                          "score_normalised", "verdict", "path", "label", "run_id"}
        assert v["camera"] == "cam0" and v["verdict"] in ("ok", "anomaly")
        assert v["t_verdict"] > v["t_capture"] and v["latency_ms"] > 0
        assert (v["verdict"] == "anomaly") == (v["score"] > v["threshold"])
        # For operators 1.0 is the threshold: above 1 exactly when alarmed.
        assert v["score_normalised"] == pytest.approx(v["score"] / v["threshold"], abs=1e-4)
        assert (v["score_normalised"] > 1.0) == (v["verdict"] == "anomaly") or v["score_normalised"] == 1.0
    # The model is real: defective paper scores higher than good paper.
    good = [v["score"] for v in verdicts if v["label"] == "good"]
    bad = [v["score"] for v in verdicts if v["label"] != "good"]
    assert good and bad and np.mean(bad) > np.mean(good)
    # stdout sink: one line per verdict.
    lines = [line for line in demo_run.proc.stdout.splitlines() if line.startswith("cam0/")]
    assert len(lines) == len(verdicts)
    alarms = [v for v in verdicts if v["verdict"] == "anomaly"]
    assert len(alarms) == demo_run.summary["alarms"] > 0
    # images sink: per alarm the raw frame, the overlay and a sidecar naming the model and the source image.
    store = demo_run.output_dir / "alarms"
    assert len(list(store.glob("*_cam0_*.frame.png"))) == len(list(store.glob("*_cam0_*.overlay.png"))) == len(alarms)
    sidecars = {s["frame_id"]: s for s in (json.loads(p.read_text()) for p in store.glob("*_cam0_*.json"))}
    assert sorted(sidecars) == [v["frame_id"] for v in alarms]
    for v in alarms:
        side = sidecars[v["frame_id"]]
        assert {k: side[k] for k in ("score", "threshold", "path", "label", "t_capture", "run_id")} == {
            k: v[k] for k in ("score", "threshold", "path", "label", "t_capture", "run_id")}
        assert side["model"].startswith("PA_BDP01_TL-patchcore patchcore state sha256:")
        assert side["pixel_threshold"] is None and "99th percentile" in side["coloured"]  # the demo has none
        [raw] = store.glob(f"*_cam0_{v['frame_id']:08d}.frame.png")
        assert raw.name.startswith(side["capture_time"].replace("-", "").replace(":", ""))  # named by capture time
        assert np.array_equal(cv2.imread(str(raw)), cv2.imread(v["path"]))  # the frame as the camera gave it


def test_demo_model_is_calibrated_like_fit_and_calibrate(demo_run: DemoRun) -> None:
    manifest = json.loads((demo_run.model / "manifest.json").read_text())
    t = manifest["threshold"]
    assert t["method"] == "clopper-pearson" and t["target_fpr"] == DEMO_TARGET_FPR and t["confidence"] == 0.95
    assert t["n_good"] == GOOD_IMAGES and t["cross_fit_folds"] == DEMO_FOLDS
    assert t["allowed_false_alarms"] == allowed_false_alarms(GOOD_IMAGES, DEMO_TARGET_FPR, 0.95)
    assert t["fpr_upper_bound"] <= DEMO_TARGET_FPR
    split = manifest["data_split"]
    fitted = [e["path"] for e in split["fitted"]]
    assert t["images"]["paths"] == fitted and len(fitted) == GOOD_IMAGES and split["held_out"] == []
    assert sorted(split["cross_fit"]["scores"])[::-1][t["allowed_false_alarms"]] == pytest.approx(t["value"])
    assert demo_run.summary["calibration"] == t
    assert {v["threshold"] for v in demo_run.verdicts} == {round(t["value"], 6)}


def test_demo_records_good_scores_but_runs_no_calibration_check(demo_run: DemoRun) -> None:
    """Its camera streams test/ (defects first), which the start-up check cannot tell from a changed camera."""
    t = json.loads((demo_run.model / "manifest.json").read_text())["threshold"]
    assert t["good_scores"]["n"] == GOOD_IMAGES and len(t["good_scores"]["sample"]) == GOOD_IMAGES
    assert "calibration check" not in demo_run.proc.stderr


def test_run_without_any_threshold_fails_naming_both_places(
    model_without_threshold: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_pipeline(tmp_path / "p.yaml", model_without_threshold, tmp_path)
    assert main(["run", str(cfg)]) == 2  # in-process: no stage starts before the threshold is known
    err = capsys.readouterr().err
    assert "no decision threshold" in err
    assert str(model_without_threshold) in err and "pipeline.decide.threshold" in err


def test_run_with_a_missing_model_fails_with_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_pipeline(tmp_path / "p.yaml", tmp_path / "nowhere", tmp_path)
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "no model artefact" in err and str(tmp_path / "nowhere") in err


def test_offline_video_with_block_policy_and_a_custom_stage(demo_run: DemoRun, tmp_path: Path) -> None:
    """A video file read as fast as the pipeline takes it, policy block: back-pressure reaches the reader and no frame
    is dropped for a full queue although the scorer is slower than the file. A custom stage (one line of YAML) passes
    every other frame on; the others are counted as filtered."""
    video = _test_video(tmp_path, 40)
    cfg = write_pipeline(
        tmp_path / "offline.yaml", demo_run.model, tmp_path,
        stages=["source", "preprocess", "infer", "tests.pipeline.stage_plugins:Sampler", "decide", "sink"],
        policy="block", metrics={"enabled": False},
        source={"kind": "video", "path": str(video), "fps": None},
        preprocess={"queue_size": 2}, infer={"queue_size": 2, "max_batch": 2, "delay_ms": 30},
    )
    out = cli("run", str(cfg), "--summary", str(tmp_path / "summary.json"), timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_in"] == 40 and summary["scored"] == 20
    assert summary["dropped"] == {"filtered": 20} and summary["unaccounted"] == 0
    verdicts = [json.loads(line) for line in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    first = summary["first_frame_id"]  # the Sampler passes the even ids on
    assert [v["frame_id"] for v in verdicts] == [i for i in range(first, first + 40) if i % 2 == 0]
    assert all(v["path"] == str(video) for v in verdicts)


def test_batches_side_by_side_leave_in_the_order_they_were_read(demo_run: DemoRun, tmp_path: Path) -> None:
    """A stage that takes three batches at once, the later ones often finishing first (stage_plugins.Shuffler):
    every frame still reaches its verdict, and in the order the camera read it."""
    cfg = write_pipeline(
        tmp_path / "shuffled.yaml", demo_run.model, tmp_path,
        stages=["source", "preprocess", "infer", "tests.pipeline.stage_plugins:Shuffler", "decide", "sink"],
        policy="block", metrics={"enabled": False},
        source={"kind": "video", "path": str(_test_video(tmp_path, 40)), "fps": None},
    )
    out = cli("run", str(cfg), "--summary", str(tmp_path / "summary.json"), timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["scored"] == 40 and summary["unaccounted"] == 0 and not summary["dropped"]
    [held] = re.findall(r"shuffler: at most (\d+) batches at once", out.stderr)
    assert int(held) >= 2  # the batches did run side by side
    verdicts = [json.loads(line) for line in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    first = summary["first_frame_id"]
    assert [v["frame_id"] for v in verdicts] == list(range(first, first + 40))


def _test_video(tmp_path: Path, frames: int) -> Path:
    """The first `frames` test images of the demo's data set as a video file."""
    from stream_ad.data import read_image
    from tests.sources.test_files import make_video

    images = [read_image(p) for p in sorted((CATEGORY / "test").rglob("*.png"))[:frames]]
    return make_video(tmp_path / "frames.mp4", images)


def test_demo_logs_hold_no_dependency_noise(demo_run: DemoRun) -> None:
    """The CLI process and every stage worker at normal verbosity: no tracebacks, no warnings of dependencies (faiss's
    loader, torch's tracer under OpenVINO's converter), one line per event."""
    err = demo_run.proc.stderr
    for noise in ("Traceback", "ModuleNotFoundError", "Warning", "faiss.loader"):
        assert noise not in err, [line for line in err.splitlines() if noise in line]
