"""The inspection console: a Django web app beside the daemon, never inside it.

It subscribes to the daemon's ZeroMQ verdicts, keeps their history, manages datasets, training
jobs and trained models, and promotes a model into the daemon's models folder. It runs as its own
process (``edge-inspector console``) so the daemon never imports Django.
"""
