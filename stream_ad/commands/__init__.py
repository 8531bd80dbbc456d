"""The use cases a line needs, with typed arguments: fit, calibrate, evaluate, predict, run, check, config show,
demo. The CLI (stream_ad.cli) parses arguments into these calls and nothing else; the benchmarks (benchmarks/,
outside the package) build on them.

checked_settings.py  settings loaded and the method's params checked, before any work starts
fit.py               fit on a folder of good images (or train/good) minus the calibration hold-out, save the artefact
calibrate.py         set the artefact's threshold for a bounded false-alarm rate
evaluate.py          image AUROC, pixel AUROC and PRO on labelled folders or data.root/test
predict.py           score image files and folders with a saved model: a line each, overlays, a CSV
export.py            a model artefact -> a runtime artefact served without torch (stream_ad.line)
run.py               a pipeline file in the foreground
check.py             a pipeline file validated without starting it
config_show.py       the effective settings, each with its origin
demo.py              the embedded default job
"""
