"""stream_ad: real-time unsupervised visual anomaly detection for production-line cameras."""

__version__ = "0.1.0"
