"""The run plan from settings alone: endpoints for each transport, explicit endpoints, a custom stage, maps for the
images sink, threshold and model carried, and the JSON the stage processes read back. No process starts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream_ad.frames import ModelInfo
from stream_ad.pipeline.plan import ModelSpec, RunIdentity, RunPlan, StageSpec, plan_run
from stream_ad.settings import ConfigError, Settings, load_settings

RUN_DIR = Path("/run/stream-ad-test")
KEYS = "/etc/stream-ad/keys"  # tcp needs keys; planning only names them
MODEL = Path("/models/tile-patchcore")
MODEL_INFO = ModelInfo("tile-patchcore patchcore state sha256:0123456789abcdef", pixel_threshold=1.75)
RUN = RunIdentity("0b5c2a9e-3f1d-4c55-9a51-6a8f1e2d7c44", 1_750_000_000_000_000)


def _settings(**pipeline: object) -> Settings:
    return load_settings(pipeline=pipeline)


def _plan(settings: Settings, threshold: float = 2.5, model: ModelInfo = MODEL_INFO) -> RunPlan:
    return plan_run(settings, models=[ModelSpec("m0", MODEL, threshold, model, settings)],
                    camera_models={"cam0": "m0"}, run_dir=RUN_DIR, run=RUN)


def test_ipc_plan_chains_the_stages_through_sockets_in_the_run_folder() -> None:
    plan = _plan(_settings())
    assert [s.name for s in plan.stages] == ["source", "preprocess", "infer", "decide", "sink"]
    assert plan.notices == f"ipc://{RUN_DIR}/supervisor.sock"
    source, preprocess, infer, decide, sink = plan.stages
    assert source == StageSpec("source", "source", None, f"ipc://{RUN_DIR}/preprocess.sock", policy="drop_oldest",
                               camera="cam0", model="m0")
    assert preprocess.bind == f"ipc://{RUN_DIR}/preprocess.sock"
    assert preprocess.connect == infer.bind == f"ipc://{RUN_DIR}/infer.sock"
    assert infer.connect == decide.bind and decide.connect == sink.bind == f"ipc://{RUN_DIR}/sink.sock"
    assert sink.connect is None  # the last stage reports verdicts, it sends nothing on
    # Each stage's queue and batching as its settings section says.
    cfg = Settings().pipeline
    assert (infer.queue_size, infer.max_batch, infer.max_wait_ms) == (
        cfg.infer.queue_size, cfg.infer.max_batch, cfg.infer.max_wait_ms)
    assert (sink.queue_size, sink.max_batch) == (cfg.sink.queue_size, cfg.sink.max_batch)


def test_tcp_plan_numbers_the_ports_from_the_base() -> None:
    plan = _plan(_settings(transport="tcp", tcp_base_port=7000, keys_dir=KEYS))
    assert plan.notices == "tcp://127.0.0.1:7000"
    assert [s.bind for s in plan.stages] == [None] + [f"tcp://127.0.0.1:{7000 + i}" for i in range(1, 5)]
    assert [s.connect for s in plan.stages] == [f"tcp://127.0.0.1:{7000 + i}" for i in range(1, 5)] + [None]


def test_the_console_meets_the_stages_over_ipc_even_on_tcp() -> None:
    """No tcp port for the teaching channel: a local user reaching it could teach the model to miss defects."""
    plan = _plan(_settings(transport="tcp", tcp_base_port=7000, keys_dir=KEYS, console={"enabled": True}))
    assert plan.console is not None
    assert (plan.console.tap, plan.console.control("m0")) == (f"ipc://{RUN_DIR}/console-tap.sock",
                                                             f"ipc://{RUN_DIR}/infer-control.sock")


def test_explicit_endpoints_and_connects_win() -> None:
    plan = _plan(_settings(
        keys_dir=KEYS,
        supervisor={"endpoint": "tcp://0.0.0.0:6000"},
        source={"connect": "tcp://edge-box:6001"},
        infer={"endpoint": "tcp://0.0.0.0:6002", "connect": "tcp://gpu-box:6002"},
    ))
    source, preprocess, infer = plan.stages[:3]
    assert plan.notices == "tcp://0.0.0.0:6000"
    assert source.connect == "tcp://edge-box:6001"  # not the preprocess stage's own endpoint
    assert infer.bind == "tcp://0.0.0.0:6002"
    assert preprocess.connect == "tcp://gpu-box:6002"  # the stage before infer connects where infer is reached


def test_a_custom_middle_stage_gets_default_queue_settings_and_its_class_as_label() -> None:
    plan = _plan(_settings(stages=["source", "preprocess", "infer", "mypkg.checks:Sampler", "decide", "sink"],
                           policy="drop_newest"))
    custom = plan.stage("mypkg.checks:Sampler")
    assert custom.label == "Sampler"
    assert custom.bind == f"ipc://{RUN_DIR}/Sampler.sock"
    assert plan.stage("infer").connect == custom.bind and custom.connect == plan.stage("decide").bind
    assert (custom.queue_size, custom.max_batch, custom.max_wait_ms, custom.policy) == (8, 1, 0.0, "drop_newest")


def test_maps_are_sent_only_when_a_sink_draws_them() -> None:
    assert not _plan(_settings()).send_maps
    assert _plan(_settings(sink={"outputs": [{"kind": "jsonl"}, {"kind": "images"}]})).send_maps


def test_threshold_model_and_settings_travel_through_the_plan_file() -> None:
    settings = _settings(infer={"max_batch": 3}, decide={"policy": "drop_newest"})
    plan = _plan(settings, threshold=0.125)
    model = plan.model_spec("m0")
    assert model.threshold == 0.125 and model.model_dir == MODEL and model.info == MODEL_INFO
    assert plan.stage("decide").policy == "drop_newest"
    again = RunPlan.from_json(plan.to_json())
    assert again == plan
    assert (again.run_id, again.first_frame_id) == (RUN.run_id, RUN.first_frame_id)
    # A model without a pixel threshold travels as one (the alarm store then colours a quantile of the map).
    bare = _plan(settings, model=ModelInfo("m patchcore state sha256:0"))
    assert RunPlan.from_json(bare.to_json()).model_spec("m0").info.pixel_threshold is None
    assert again.settings.pipeline.infer.max_batch == 3


def test_each_run_gets_its_own_id_and_starts_its_frame_ids_above_every_earlier_run() -> None:
    first = RunIdentity.new()
    time.sleep(0.01)
    second = RunIdentity.new()
    assert second.run_id != first.run_id and len(first.run_id) == 36
    # 10 ms later the next run starts 10,000 ids above: the first run's camera would need a million frames a second
    # to reach them.
    assert second.first_frame_id - first.first_frame_id >= 10_000
    assert second.first_frame_id < 2**53  # exact as a JSON number


def _cameras(transport: str = "ipc") -> Settings:
    cams = [{"camera": "top", "model": "/m/a"}, {"camera": "side", "model": "/m/b"}, {"camera": "end", "model": "/m/a"}]
    return _settings(cameras=cams, transport=transport, tcp_base_port=7000, insecure_tcp=True)


def _two_models(settings: Settings) -> RunPlan:
    models = [ModelSpec("m0", Path("/m/a"), 2.0, MODEL_INFO, settings),
              ModelSpec("m1", Path("/m/b"), 3.0, MODEL_INFO, settings)]
    return plan_run(settings, models=models, camera_models={"top": "m0", "side": "m1", "end": "m0"},
                    run_dir=RUN_DIR, run=RUN)


def test_many_cameras_get_a_source_each_and_each_model_one_chain_into_one_sink() -> None:
    plan = _two_models(_cameras())
    assert [s.label for s in plan.stages] == [
        "source-top", "source-side", "source-end", "preprocess-m0", "infer-m0", "decide-m0",
        "preprocess-m1", "infer-m1", "decide-m1", "sink"]
    sources = {s.camera: s for s in plan.sources}
    # The cameras of one artefact send to its one chain (batched together there); the chains end in one sink.
    assert sources["top"].connect == sources["end"].connect == plan.stage("preprocess-m0").bind
    assert sources["side"].connect == plan.stage("preprocess-m1").bind
    assert plan.stage("decide-m0").connect == plan.stage("decide-m1").connect == plan.stage("sink").bind
    assert [s.model for s in plan.stages] == ["m0", "m1", "m0", "m0", "m0", "m0", "m1", "m1", "m1", None]
    again = RunPlan.from_json(plan.to_json())
    assert again == plan and again.model_spec("m1").threshold == 3.0


def test_tcp_ports_of_a_model_stay_where_they_are_when_a_reload_adds_a_model() -> None:
    one = plan_run(_cameras("tcp"), models=[ModelSpec("m0", Path("/m/a"), 2.0, MODEL_INFO, _cameras("tcp"))],
                   camera_models={"top": "m0", "side": "m0", "end": "m0"}, run_dir=RUN_DIR, run=RUN)
    two = _two_models(_cameras("tcp"))
    for label in ("preprocess-m0", "infer-m0", "decide-m0", "sink"):
        assert one.stage(label).bind == two.stage(label).bind
    binds = [s.bind for s in two.stages if s.bind]
    assert len(set(binds)) == len(binds) and two.notices == "tcp://127.0.0.1:7000"
    assert two.stage("preprocess-m1").bind == "tcp://127.0.0.1:7005"  # the block after m0's three stages and sink


def test_a_camera_list_refuses_fixed_endpoints_and_one_teaching_channel_for_two_models() -> None:
    with pytest.raises(ValueError, match=r"pipeline\.infer\.endpoint: with pipeline\.cameras"):
        _two_models(_cameras().model_copy(update={"pipeline": _cameras().pipeline.model_copy(
            update={"infer": _cameras().pipeline.infer.model_copy(update={"endpoint": "ipc:///x.sock"})})}))
    fixed = _cameras("tcp").model_copy(update={"pipeline": _cameras("tcp").pipeline.model_copy(update={
        "console": _cameras().pipeline.console.model_copy(update={"enabled": True,
                                                                  "control_endpoint": "ipc:///x.sock"})})})
    with pytest.raises(ValueError, match=r"pipeline\.console\.control_endpoint: the cameras name 2 models"):
        _two_models(fixed)


def test_each_model_gets_a_teaching_channel_of_its_own_over_ipc() -> None:
    """The console teaches a camera's own model; no tcp port for any teaching channel, even on tcp."""
    settings = _cameras("tcp").model_copy(update={"pipeline": _cameras("tcp").pipeline.model_copy(update={
        "console": _cameras().pipeline.console.model_copy(update={"enabled": True})})})
    plan = _two_models(settings)
    assert plan.console is not None
    assert plan.console.control("m0") == f"ipc://{RUN_DIR}/infer-control-m0.sock"
    assert plan.console.control("m1") == f"ipc://{RUN_DIR}/infer-control-m1.sock"
    with pytest.raises(KeyError, match="no teaching channel for model 'm2'; the plan has m0, m1"):
        plan.console.control("m2")
    assert RunPlan.from_json(plan.to_json()).console == plan.console


def test_camera_settings_name_the_entry_that_is_wrong() -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.cameras\.1\.kind is 'rtsp' but pipeline\.cameras\.1\.url"):
        _settings(cameras=[{"camera": "a"}, {"camera": "b", "kind": "rtsp"}])
    with pytest.raises(ConfigError, match=r"a name of its own .*\['a'\]"):
        _settings(cameras=[{"camera": "a"}, {"camera": "a"}])
    with pytest.raises(ConfigError, match="pipeline.cameras .* or pipeline.source .*, not both"):
        _settings(cameras=[{"camera": "a"}], source={"fps": 5})
