"""Forms for the console pages (CSRF is enforced by the middleware on every POST)."""

from __future__ import annotations

from pathlib import Path

from django import forms

from .jobs import DETECTOR_KINDS
from .models import Dataset


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
        path = Path(self.cleaned_data["path"]).expanduser()
        if not path.is_absolute():
            raise forms.ValidationError(f"{path}: expected an absolute path")
        if not path.exists():
            raise forms.ValidationError(f"{path}: no such file or folder")
        return str(path.resolve())


class TrainingForm(BootstrapForm):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.filter(status="valid"))
    kind = forms.ChoiceField(choices=DETECTOR_KINDS, label="Detector")
    name = forms.CharField(max_length=100, required=False, help_text="Model name (default: chosen by the trainer).")
    seed = forms.IntegerField(required=False, initial=0, min_value=0)
    input_size = forms.IntegerField(required=False, min_value=16, max_value=1024,
                                    help_text="Square input size in pixels (default: the trainer's, 224).")
    epochs = forms.IntegerField(required=False, min_value=1, max_value=1000,
                                help_text="Epochs (autoencoder, classifier).")
    evaluate = forms.BooleanField(required=False, initial=True, help_text="Evaluate on the test split afterwards.")
    extra_args = forms.CharField(
        max_length=500, required=False, label="Extra arguments", help_text="Passed to `edge-inspector train` as is."
    )


class ReviewForm(BootstrapForm):
    note = forms.CharField(max_length=1000, required=False)


class ImportModelForm(BootstrapForm):
    card_path = forms.CharField(max_length=1000, label="Card path", help_text="Path of an existing <name>.card.json.")
    report_dir = forms.CharField(max_length=1000, required=False, help_text="Folder with report.json (optional).")
