"""Datasets: records (types.py), readers for MVTec/VisA/plain folders/ZIPs (readers.py, archive.py),
model input through the shared preprocessing (loading.py), synthetic demo data (synthetic.py) and
synthetic defects for training (augment.py), the line's review folder merged in (review.py).

Nothing is imported here, so ``import edge_inspector.data.types`` stays cheap for the daemon.
"""
