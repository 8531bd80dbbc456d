"""The run plan from settings alone: endpoints for each transport, explicit endpoints, a custom stage, maps for the
images sink, threshold and model carried, and the JSON the stage processes read back. No process starts."""

from __future__ import annotations

import time
from pathlib import Path

from stream_ad.frames import ModelInfo
from stream_ad.pipeline.plan import RunIdentity, RunPlan, StageSpec, plan_run
from stream_ad.settings import Settings, load_settings

RUN_DIR = Path("/run/stream-ad-test")
KEYS = "/etc/stream-ad/keys"  # tcp needs keys; planning only names them
MODEL = Path("/models/tile-patchcore")
MODEL_INFO = ModelInfo("tile-patchcore patchcore state sha256:0123456789abcdef", pixel_threshold=1.75)
RUN = RunIdentity("0b5c2a9e-3f1d-4c55-9a51-6a8f1e2d7c44", 1_750_000_000_000_000)


def _settings(**pipeline: object) -> Settings:
    return load_settings(pipeline=pipeline)


def _plan(settings: Settings, threshold: float = 2.5, model: ModelInfo = MODEL_INFO) -> RunPlan:
    return plan_run(settings, model_dir=MODEL, threshold=threshold, model=model, run_dir=RUN_DIR, run=RUN)


def test_ipc_plan_chains_the_stages_through_sockets_in_the_run_folder() -> None:
    plan = _plan(_settings())
    assert [s.name for s in plan.stages] == ["source", "preprocess", "infer", "decide", "sink"]
    assert plan.notices == f"ipc://{RUN_DIR}/supervisor.sock"
    source, preprocess, infer, decide, sink = plan.stages
    assert source == StageSpec("source", "source", None, f"ipc://{RUN_DIR}/preprocess.sock", policy="drop_oldest")
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
    assert (plan.console.tap, plan.console.control) == (f"ipc://{RUN_DIR}/console-tap.sock",
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
    assert plan.threshold == 0.125 and plan.model_dir == MODEL and plan.model == MODEL_INFO
    assert plan.stage("decide").policy == "drop_newest"
    again = RunPlan.from_json(plan.to_json())
    assert again == plan
    assert (again.run_id, again.first_frame_id) == (RUN.run_id, RUN.first_frame_id)
    # A model without a pixel threshold travels as one (the alarm store then colours a quantile of the map).
    bare = _plan(settings, model=ModelInfo("m patchcore state sha256:0"))
    assert RunPlan.from_json(bare.to_json()).model.pixel_threshold is None
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
