"""Forms for the console pages (CSRF is enforced by the middleware on every POST)."""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.conf import settings

from .jobs import DETECTOR_KINDS, JobArgumentError, check_name, parse_extra_args
from .models import Dataset


def inside_roots(text: str, roots: list[Path], setting: str, what: str) -> Path:
    """``text`` as a resolved absolute path inside one of ``roots`` (links resolved first), else a form error.

    The message names the allowed folders and the setting, not what lies on the server outside them.
    """
    path = Path(text)
    if not path.is_absolute():
        raise forms.ValidationError(f"{text}: expected an absolute path")
    try:
        resolved = path.resolve()
    except (OSError, ValueError) as exc:
        raise forms.ValidationError(f"{text}: not a usable path ({exc})") from exc
    for root in roots:
        root = Path(root).resolve()
        if resolved == root or root in resolved.parents:
            return resolved
    if not roots:
        raise forms.ValidationError(f"{what} from server paths is turned off: set {setting} to the folders "
                                    "allowed (comma-separated)")
    raise forms.ValidationError(f"{text}: not inside an allowed folder ({', '.join(map(str, roots))}; "
                                f"set by {setting})")


class BootstrapForm(forms.Form):
    """Adds Bootstrap's classes to every widget so templates can render forms with ``as_div``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, forms.CheckboxInput):
                css = "form-check-input"
            elif isinstance(widget, forms.Select):
                css = "form-select form-select-sm"
            else:
                css = "form-control form-control-sm"
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()


CATEGORY_HELP = "Only for a root holding several categories (MVTec AD, VisA): the one to use."


class DatasetUploadForm(BootstrapForm):
    name = forms.CharField(max_length=200)
    category = forms.CharField(max_length=100, required=False, help_text=CATEGORY_HELP)
    archive = forms.FileField(help_text="ZIP of an MVTec-style (train/good, test/<defect>) or normal/ + anomaly/ tree.")

    def clean_archive(self):
        archive = self.cleaned_data["archive"]
        if not archive.name.lower().endswith(".zip"):
            raise forms.ValidationError(f"{archive.name}: expected a .zip file")
        return archive


class DatasetFolderForm(BootstrapForm):
    name = forms.CharField(max_length=200)
    path = forms.CharField(max_length=1000, help_text="Absolute path of a dataset folder on the console machine.")
    category = forms.CharField(max_length=100, required=False, help_text=CATEGORY_HELP)

    def clean_path(self):
        path = inside_roots(self.cleaned_data["path"], settings.CONSOLE["DATASET_ROOTS"],
                            "EDGE_INSPECTOR_DATASET_ROOTS", "Registering datasets")
        if not path.exists():
            raise forms.ValidationError(f"{path}: no such file or folder")
        return str(path)


class TrainingForm(BootstrapForm):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.filter(status="valid"))
    kind = forms.ChoiceField(choices=DETECTOR_KINDS, label="Detector")
    name = forms.CharField(max_length=100, required=False, help_text="Model name (default: chosen by the trainer).")
    seed = forms.IntegerField(required=False, initial=0, min_value=0)
    input_size = forms.IntegerField(required=False, min_value=16, max_value=1024,
                                    help_text="Square input size in pixels (default: the trainer's, 224).")
    epochs = forms.IntegerField(required=False, min_value=1, max_value=1000,
                                help_text="Epochs (autoencoder, classifier, segmenter).")
    evaluate = forms.BooleanField(required=False, initial=True, help_text="Evaluate on the test split afterwards.")
    extra_args = forms.CharField(
        max_length=500, required=False, label="Extra arguments",
        help_text="More `edge-inspector train` flags: --max-train, --threads, --scheme, --val-fraction, "
        "--split-seed, --backbone, --calibration, --method, --target, --option KEY=NUMBER, --quiet.",
    )

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        try:
            return check_name(name) if name else ""
        except JobArgumentError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_extra_args(self):
        text = self.cleaned_data["extra_args"]
        try:
            parse_extra_args(text)
        except JobArgumentError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return text


class ReviewForm(BootstrapForm):
    note = forms.CharField(max_length=1000, required=False)


def import_roots() -> list[Path]:
    """Where cards may be imported from: the daemon's models dir, the console's job folders, IMPORT_ROOTS."""
    c = settings.CONSOLE
    return [Path(c["MODELS_DIR"]), Path(c["JOBS_DIR"]), *c.get("IMPORT_ROOTS", [])]


class ImportModelForm(BootstrapForm):
    card_path = forms.CharField(max_length=1000, label="Card path", help_text="Path of an existing <name>.card.json "
                                "in the models folder, a job folder or EDGE_INSPECTOR_IMPORT_ROOTS.")
    report_dir = forms.CharField(max_length=1000, required=False, help_text="Folder with report.json (optional).")

    def clean_card_path(self):
        return str(inside_roots(self.cleaned_data["card_path"], import_roots(), "EDGE_INSPECTOR_IMPORT_ROOTS",
                                "Importing models"))

    def clean_report_dir(self):
        text = self.cleaned_data["report_dir"]
        if not text:
            return ""
        return str(inside_roots(text, import_roots(), "EDGE_INSPECTOR_IMPORT_ROOTS", "Importing reports"))
