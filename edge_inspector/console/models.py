"""Console database: datasets, training jobs, trained models, verdict history and the audit log."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Dataset(models.Model):
    """A dataset the user uploaded (ZIP) or pointed to (folder), with the readers' validation result."""

    SOURCE_CHOICES = [("zip", "Uploaded ZIP"), ("folder", "Folder on this machine")]
    STATUS_CHOICES = [("pending", "Pending"), ("valid", "Valid"), ("invalid", "Invalid")]

    name = models.CharField(max_length=200)
    source = models.CharField(max_length=10, choices=SOURCE_CHOICES)
    path = models.CharField(max_length=1000, help_text="ZIP file or folder the readers load.")
    category = models.CharField(max_length=100, blank=True,
                                help_text="Category of a multi-category root (MVTec AD, VisA); empty for one category.")
    layout = models.CharField(max_length=40, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="Images per split and defect type.")
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default="pending")
    error = models.TextField(blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def total_images(self) -> int:
        return int(self.counts.get("total", 0)) if isinstance(self.counts, dict) else 0


class TrainingJob(models.Model):
    """One training (+ evaluation) run executed by a detached worker process (see jobs.py)."""

    STATUS_CHOICES = [
        ("queued", "Queued"),
        ("running", "Running"),
        ("done", "Done"),
        ("failed", "Failed"),
        ("cancelled", "Cancelled"),
    ]
    FINISHED = ("done", "failed", "cancelled")

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="jobs")
    kind = models.CharField(max_length=40, help_text="Detector kind passed to `edge-inspector train --model`.")
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default="queued")
    progress = models.FloatField(default=0.0, help_text="0..1 over all steps.")
    step = models.CharField(max_length=40, blank=True)
    work_dir = models.CharField(max_length=1000, blank=True)
    log_path = models.CharField(max_length=1000, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    result_card = models.CharField(max_length=1000, blank=True)
    error = models.TextField(blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.kind} on {self.dataset})"

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED


class TrainedModel(models.Model):
    """A model card known to the console, with its metrics and evaluation report."""

    name = models.CharField(max_length=200)
    version = models.CharField(max_length=50, blank=True)
    kind = models.CharField(max_length=40, blank=True)
    card_path = models.CharField(max_length=1000, unique=True)
    card = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    report_dir = models.CharField(max_length=1000, blank=True)
    deployed = models.BooleanField(default=False)
    deployed_at = models.DateTimeField(null=True, blank=True)
    job = models.ForeignKey(TrainingJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="models")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Verdict(models.Model):
    """One verdict received from a daemon over ZeroMQ or MQTT (the message in edge_inspector/messages.py)."""

    line = models.CharField(max_length=100)
    camera = models.CharField(max_length=100, db_index=True)
    frame = models.BigIntegerField()
    captured_at = models.DateTimeField(db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    verdict = models.CharField(max_length=10)
    score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(default=0.5)
    defect_type = models.CharField(max_length=100, blank=True)
    defect_confidence = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True, help_text="Total decision latency.")
    image = models.CharField(max_length=1000, blank=True)
    source = models.CharField(max_length=1000, blank=True)
    error = models.TextField(blank=True)
    message = models.JSONField(default=dict, help_text="The full message as received.")
    review = models.BooleanField(default=False, help_text="Marked as a false alarm for review.")
    review_note = models.TextField(blank=True)
    reviewed_by = models.CharField(max_length=150, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["verdict", "id"], name="verdict_kind_id"),  # gallery: newest defects
            models.Index(fields=["line", "camera", "id"], name="verdict_line_camera_id"),  # line/camera pages
            models.Index(fields=["received_at"], name="verdict_received"),  # retention by age
        ]
        constraints = [
            # Delivery is at-least-once; (camera, frame) repeats only across daemon restarts,
            # which captured_at tells apart.
            models.UniqueConstraint(fields=["line", "camera", "frame", "captured_at"], name="verdict_dedupe")
        ]

    def __str__(self) -> str:
        return f"{self.camera}#{self.frame} {self.verdict}"


class LineStatus(models.Model):
    """What a line's daemon last said on ``<prefix>/<line>/status`` (MQTT, retained).

    The daemon publishes a retained ``online`` after each connect and the broker publishes its
    last will ``offline`` when the daemon vanishes, so this row is the line's health as the plant
    broker sees it, also for a line that has published no verdict yet.
    """

    line = models.CharField(max_length=100, unique=True)
    state = models.CharField(max_length=40, help_text="online, offline, or what the daemon published.")
    changed_at = models.DateTimeField(help_text="When the console received this state.")
    broker = models.CharField(max_length=300, blank=True, help_text="Broker it came through (host:port).")

    class Meta:
        ordering = ["line"]

    def __str__(self) -> str:
        return f"{self.line}: {self.state}"


class AuditLog(models.Model):
    """Who did what, when: promotions, uploads, jobs and reviews."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=50)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.username} {self.action}"


def audit(user, action: str, **detail) -> AuditLog:
    """Record an action; ``user`` may be None for actions taken by the console itself."""
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    return AuditLog.objects.create(
        user=user if authenticated else None,
        username=user.get_username() if authenticated else "system",
        action=action,
        detail=detail,
    )


class LoginFailure(models.Model):
    """One failed login (login.py counts them per user name and per client address for the lockout)."""

    username = models.CharField(max_length=150, db_index=True)
    ip = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
