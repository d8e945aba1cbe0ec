"""Benchmarks: model (in-process), server (real gunicorn), cold start, peer server, report.

Every suite writes one JSON document per run under results/<device>/ with an environment
fingerprint; `gen3d bench report` turns them into README.md, plots and the
seconds-per-image file that `gen3d cost --bench` reads.
"""
