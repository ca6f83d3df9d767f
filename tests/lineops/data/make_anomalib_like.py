"""Makes ``anomalib_like_b2_dynamic_hw.onnx``: the input layout anomalib 2.7's ``engine.export(ONNX)``
produced under torch's dynamo exporter for the integrators (fixed batch 2, dynamic height/width,
pre-processor Resize to 224x224 inside the graph, every batch dimension baked into Reshape/Resize
constants), with a tiny PatchCore-like body (conv features, nearest-neighbour distance to a memory
bank, upsampled map, max score). Not anomalib itself (it cannot be installed here without its
pretrained-weight downloads); the graph structure that broke the import is the exporter's.

Run once, the output is committed (44 KB):
    pip install --target .onnxscript onnxscript onnx-ir   # the dynamo exporter needs them (a folder git ignores)
    PYTHONPATH=.onnxscript python tests/lineops/data/make_anomalib_like.py
"""

from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

OUT = Path(__file__).with_name("anomalib_like_b2_dynamic_hw.onnx")


class PatchCoreLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.register_buffer("memory", torch.randn(16, 8))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.interpolate(image, size=(224, 224), mode="bilinear", align_corners=False)  # the pre-processor
        x = (x - self.mean) / self.std
        f = self.conv(x)
        b, c, h, w = f.shape
        emb = f.permute(0, 2, 3, 1).reshape(-1, c)
        d = torch.cdist(emb, self.memory).min(dim=1).values
        amap = F.interpolate(d.reshape(b, 1, h, w), size=(224, 224), mode="bilinear", align_corners=False)
        amap = torch.sigmoid(amap - 3.0)
        score = amap.flatten(1).max(dim=1).values
        return {"pred_score": score, "pred_label": score >= 0.5, "anomaly_map": amap, "pred_mask": amap >= 0.5}


def main() -> None:
    model = PatchCoreLike().eval()
    height, width = torch.export.Dim("height", min=32, max=4096), torch.export.Dim("width", min=32, max=4096)
    tmp = OUT.with_suffix(".tmp.onnx")
    torch.onnx.export(model, (torch.rand(2, 3, 256, 256),), str(tmp), input_names=["input"],
                      output_names=["pred_score", "pred_label", "anomaly_map", "pred_mask"],
                      dynamic_shapes={"image": {2: height, 3: width}}, dynamo=True)
    model = onnx.load(str(tmp))
    for node in model.graph.node:  # the exporter's stack traces name this machine's paths
        node.doc_string = ""
        keep = [p for p in node.metadata_props if "File " not in p.value]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.save(model, str(OUT))  # one file, no external .data
    tmp.unlink()
    Path(str(tmp) + ".data").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
