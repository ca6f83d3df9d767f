"""The toolchain's top-level steps: train a model, calibrate its threshold, choose among candidates, import.

``train.train_model`` fits a detector (``models/``), exports it to ONNX (``export/``), writes its card
and calibrates it (``calibrate``); ``auto.run_auto`` does that for every candidate and keeps the best
on the validation split; ``anomalib_import`` writes cards for models exported by anomalib. This room
may use the runtime's pure parts and everything below; the daemon never imports it (torch lives here,
inside functions).
"""
