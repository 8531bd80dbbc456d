"""Benchmarks of stream_ad against peer implementations; the product itself never imports this package."""

from stream_ad.bench.patchcore_peer import run_bench

__all__ = ["run_bench"]
