"""The torch-free line runtime: an exported runtime artefact (`stream-ad export`) loaded and run with OpenVINO, numpy
and OpenCV only, for line PCs installed with the `line` extra (no torch, no CUDA libraries).

artefact.py  the runtime artefact folder: manifest (kind "runtime", its own format version), the scoring graph as
             OpenVINO IR, SHA256SUMS; written by `stream-ad export`, read and checked here
model.py     a runtime artefact as the infer stage serves it: frames -> OpenCV/numpy preprocessing -> one
             OpenVINO call -> one score and map per frame

Nothing here imports torch (an import-linter contract, .importlinter); the fitting side (stream_ad.commands.export)
builds the graph and hands it to artefact.write_runtime_artefact.
"""
