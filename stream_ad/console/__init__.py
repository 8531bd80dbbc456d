"""The operator's console (pipeline.console): a live page beside the running pipeline, "this part is good" taught in
seconds, and a drift watch, for every camera of every model the run serves. One process the run starts beside the
stages (stream_ad.pipeline.services), fed by the sink stage's bounded, drop-oldest tap (stream_ad.pipeline.tap);
teaching goes to the teaching channel of the camera's model's infer stage (stream_ad.pipeline.teaching). It sits
above the pipeline: it reads the run plan (again after each reload) and frames on the wire, and the pipeline knows it
only as a module to start.

__main__.py   the process: python -m stream_ad.console PLAN.json (the tap's receiver, the plan follower, the server)
lineup.py     the models and cameras the console serves, read from the plan (each model's facts, teaching channel)
app.py        the Starlette app: the page, server-sent events, pictures, the "good" button
page.html     the page
live.py       what the page shows, kept from the tapped verdicts (cameras, recent alarms, the lineup)
drift.py      the drift watch: recent ok scores against the calibration's good scores
teach.py      the "good" button's back end: teach, or queue for a refit; the audit log
operators.py  who may teach: pipeline.console.operators_file
"""
