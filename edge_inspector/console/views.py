"""Console pages and the small JSON API the live pages poll."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.db.models import Avg, Count, Max, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from edge_inspector.card import CardError

from . import datasets, files, jobs
from .forms import DatasetFolderForm, DatasetUploadForm, ImportModelForm, ReviewForm, TrainingForm
from .models import AuditLog, Dataset, LineStatus, TrainedModel, TrainingJob, Verdict, audit
from .promote import PromoteError, promote
from .registry import metric_columns, register_card
from .roles import Role, requires
from .uploads import UploadLimits, UploadRefused, check_quota

log = logging.getLogger(__name__)
STATS_WINDOW = timedelta(hours=1)
STATS_MAX_ROWS = 20_000  # bounds the per-poll aggregate on a busy line (100 fps = 360k rows an hour)
STATS_CACHE_S = 2.0
_stats_cache: tuple[float, list[dict]] = (0.0, [])


# --- static files (vendored Bootstrap / Chart.js and the console's own JS) --------------------------
@login_not_required
@require_GET
def static_file(request: HttpRequest, path: str) -> HttpResponse:
    response = files.serve(files.contained(settings.STATIC_DIR, path))
    response["Cache-Control"] = "public, max-age=3600"
    return response


# --- dashboard + verdict API ---------------------------------------------------------------------
def verdict_json(v: Verdict) -> dict:
    return {
        "id": v.id,
        "line": v.line,
        "camera": v.camera,
        "frame": v.frame,
        "captured_at": v.captured_at.isoformat(),
        "verdict": v.verdict,
        "score": v.score,
        "defect_type": v.defect_type,
        "latency_ms": v.latency_ms,
        "image_url": f"/frames/{v.id}/frame" if v.image else None,
        "overlay_url": f"/frames/{v.id}/overlay" if v.image else None,
        "review": v.review,
    }


def _all_camera_stats() -> list[dict]:
    """Per (line, camera) over the last hour (at most the newest STATS_MAX_ROWS verdicts): counts,
    OK/defect rate, mean latency, last verdict. Cached for a couple of seconds so several open
    dashboards and line pages cost one query."""
    global _stats_cache
    now = time.monotonic()
    if now - _stats_cache[0] < STATS_CACHE_S:
        return _stats_cache[1]
    since = timezone.now() - STATS_WINDOW
    newest = Verdict.objects.order_by("-id").values_list("id", flat=True).first() or 0
    rows = (
        Verdict.objects.filter(id__gt=newest - STATS_MAX_ROWS, received_at__gte=since)
        .values("line", "camera")
        .annotate(
            total=Count("id"),
            ok=Count("id", filter=Q(verdict="ok")),
            defect=Count("id", filter=Q(verdict="defect")),
            error=Count("id", filter=Q(verdict="error")),
            latency=Avg("latency_ms"),
            last=Max("received_at"),
        )
        .order_by("line", "camera")
    )
    out = []
    for r in rows:
        total = r["total"] or 1
        out.append({
            "line": r["line"],
            "camera": r["camera"],
            "total": r["total"],
            "ok": r["ok"], "defect": r["defect"], "error": r["error"],
            "ok_rate": r["ok"] / total,
            "defect_rate": r["defect"] / total,
            "error_rate": r["error"] / total,
            "latency_ms": r["latency"],
            "last_received": r["last"].timestamp() if r["last"] else None,
        })
    _stats_cache = (now, out)
    return out


def camera_stats(line: str | None = None, camera: str | None = None) -> list[dict]:
    """The cached per-camera figures, for every line or only ``line`` (and only ``camera``)."""
    return [s for s in _all_camera_stats()
            if (line is None or s["line"] == line) and (camera is None or s["camera"] == camera)]


def line_summaries() -> list[dict]:
    """One row per line: its daemon's MQTT status and its cameras' figures over the last hour.

    A line appears once it has published a status or a verdict in the window; ``state`` is what its
    daemon last said (``online``; ``offline`` is also its last will), or ``unknown`` when the line is
    followed over ZeroMQ, which has no status topic.
    """
    lines: dict[str, dict] = {}
    for status in LineStatus.objects.all():
        lines[status.line] = {"line": status.line, "state": status.state,
                              "state_changed": status.changed_at.timestamp(), "broker": status.broker}
    for s in _all_camera_stats():
        row = lines.setdefault(s["line"], {"line": s["line"], "state": "unknown", "state_changed": None,
                                           "broker": ""})
        row.setdefault("cameras", []).append(s["camera"])
        for key in ("total", "ok", "defect", "error"):
            row[key] = row.get(key, 0) + s[key]
        if s["last_received"] and s["last_received"] > (row.get("last_received") or 0):
            row["last_received"] = s["last_received"]
    out = []
    for row in sorted(lines.values(), key=lambda r: r["line"]):
        row.setdefault("cameras", [])
        total = row.setdefault("total", 0)
        for key in ("ok", "defect", "error"):
            row[f"{key}_rate"] = row.get(key, 0) / total if total else None
        row.setdefault("last_received", None)
        out.append(row)
    return out


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "console/dashboard.html", {"poll_ms": 1000})


@require_GET
def lines(request: HttpRequest) -> HttpResponse:
    """The plant: every line the console follows, its daemon's status and the last hour per line."""
    now = time.time()
    rows = [{**row, "last_ago": f"{max(0.0, now - row['last_received']):.0f} s ago" if row["last_received"] else "—"}
            for row in line_summaries()]
    return render(request, "console/lines.html", {"lines": rows, "poll_ms": 2000})


def _known_line(line: str) -> bool:
    return LineStatus.objects.filter(line=line).exists() or Verdict.objects.filter(line=line).exists()


@require_GET
def line_detail(request: HttpRequest, line: str) -> HttpResponse:
    """One line: its cameras and latest verdicts, live (the dashboard filtered to the line)."""
    if not _known_line(line):
        raise Http404(f"no line {line!r}: no status and no verdict from it yet")
    status = LineStatus.objects.filter(line=line).first()
    return render(request, "console/dashboard.html", {"poll_ms": 1000, "line": line, "line_status": status})


@require_GET
def camera_detail(request: HttpRequest, line: str, camera: str) -> HttpResponse:
    """One camera of one line, live, with its newest defects."""
    if not Verdict.objects.filter(line=line, camera=camera).exists():
        raise Http404(f"no verdict from camera {camera!r} of line {line!r} yet")
    status = LineStatus.objects.filter(line=line).first()
    defects = Verdict.objects.filter(line=line, camera=camera, verdict="defect").order_by("-id")[:24]
    return render(request, "console/dashboard.html", {"poll_ms": 1000, "line": line, "camera": camera,
                                                      "line_status": status, "defects": defects})


@require_GET
def api_lines(request: HttpRequest) -> JsonResponse:
    """Every line's status and figures (the lines page polls it)."""
    from . import subscriber

    return JsonResponse({"lines": line_summaries(), "feeds": subscriber.feed_statuses(), "server_time": time.time()})


@require_GET
def api_verdicts(request: HttpRequest) -> JsonResponse:
    """Verdicts with id > since (oldest first, at most ``limit``), plus per-camera stats; ``line`` and
    ``camera`` narrow both to one line / one camera."""
    try:
        since = int(request.GET.get("since", "0"))
        limit = min(max(int(request.GET.get("limit", "100")), 1), 500)
    except ValueError:
        return JsonResponse({"error": "since and limit must be integers"}, status=400)
    qs = Verdict.objects.filter(id__gt=since)
    line, camera = request.GET.get("line") or None, request.GET.get("camera") or None
    if line:
        qs = qs.filter(line=line)
    if camera:
        qs = qs.filter(camera=camera)
    if since == 0:  # first call: the newest ones, not the oldest in history
        rows = list(qs.order_by("-id")[:limit])[::-1]
    else:
        rows = list(qs.order_by("id")[:limit])
    last_id = rows[-1].id if rows else since
    from . import subscriber

    feeds = subscriber.feed_statuses()
    feed = feeds[0] if feeds else None
    last = max((f["last_received"] for f in feeds if f["last_received"]), default=None)
    daemon = subscriber.daemon_status(last)
    line_state = None
    if line and (status := LineStatus.objects.filter(line=line).first()) is not None:
        line_state = {"state": status.state, "changed": status.changed_at.timestamp()}
    return JsonResponse({"verdicts": [verdict_json(v) for v in rows], "last_id": last_id,
                         "cameras": camera_stats(line, camera), "feed": feed, "feeds": feeds, "daemon": daemon,
                         "line": line_state, "server_time": time.time()})


@require_GET
def frame_image(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    verdict = get_object_or_404(Verdict, pk=pk)
    frame = files.frame_path(settings.CONSOLE["FRAMES_ROOT"], verdict.image)
    if kind == "overlay":
        overlay = files.overlay_path(frame)
        return files.serve(overlay or frame)
    if kind != "frame":
        raise Http404("unknown image kind")
    return files.serve(frame)


# --- gallery -------------------------------------------------------------------------------------
def _parse_dt(value: str) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt if dt.tzinfo else timezone.make_aware(dt, timezone.get_current_timezone())


@require_GET
def gallery(request: HttpRequest) -> HttpResponse:
    q = request.GET
    qs = Verdict.objects.filter(verdict="defect")
    errors = []
    if q.get("line"):
        qs = qs.filter(line=q["line"])
    if q.get("camera"):
        qs = qs.filter(camera=q["camera"])
    if q.get("defect_type"):
        qs = qs.filter(defect_type=q["defect_type"])
    if q.get("review") == "1":
        qs = qs.filter(review=True)
    for field, lookup in (("since", "captured_at__gte"), ("until", "captured_at__lte")):
        if q.get(field):
            if (dt := _parse_dt(q[field])) is None:
                errors.append(f"{field}: expected a date/time like 2026-11-24T10:00, got {q[field]!r}")
            else:
                qs = qs.filter(**{lookup: dt})
    if q.get("min_score"):
        try:
            qs = qs.filter(score__gte=float(q["min_score"]))
        except ValueError:
            errors.append(f"min_score: expected a number, got {q['min_score']!r}")
    context = {
        "verdicts": qs.order_by("-id")[:120],
        "lines": Verdict.objects.values_list("line", flat=True).distinct().order_by("line"),
        "cameras": Verdict.objects.values_list("camera", flat=True).distinct().order_by("camera"),
        "defect_types": Verdict.objects.exclude(defect_type="").values_list("defect_type", flat=True)
        .distinct().order_by("defect_type"),
        "filters": q,
        "errors": errors,
    }
    return render(request, "console/gallery.html", context)


def _local_next(request: HttpRequest, default: str) -> str:
    """The form's ``next`` when it is a path on this console, else ``default``: never an open redirect."""
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


@require_POST
def review_verdict(request: HttpRequest, pk: int) -> HttpResponse:
    """The "false alarm" button: mark a defect verdict for review, with an optional note."""
    verdict = get_object_or_404(Verdict, pk=pk)
    form = ReviewForm(request.POST)
    note = form.cleaned_data["note"] if form.is_valid() else ""
    verdict.review, verdict.review_note = True, note
    verdict.reviewed_by, verdict.reviewed_at = request.user.get_username(), timezone.now()
    verdict.save(update_fields=["review", "review_note", "reviewed_by", "reviewed_at"])
    audit(request.user, "verdict.false_alarm", verdict=verdict.pk, camera=verdict.camera, frame=verdict.frame,
          note=note)
    messages.success(request, f"{verdict.camera} frame {verdict.frame} marked as a false alarm for review.")
    return redirect(_local_next(request, "gallery"))


# --- datasets ------------------------------------------------------------------------------------
def _datasets_page(request, upload_form=None, folder_form=None, status=200):
    context = {
        "datasets": Dataset.objects.all(),
        "upload_form": upload_form or DatasetUploadForm(),
        "folder_form": folder_form or DatasetFolderForm(),
    }
    return render(request, "console/datasets.html", context, status=status)


@require_GET
def dataset_list(request: HttpRequest) -> HttpResponse:
    return _datasets_page(request)


def _after_validation(request, record: Dataset) -> HttpResponse:
    audit(request.user, "dataset.add", dataset=record.pk, name=record.name, path=record.path)
    datasets.validate_soon(record)
    record.refresh_from_db()
    if record.status == "pending":
        messages.info(request, f"Dataset {record.name} is being validated; this page updates when it is done.")
    elif record.status == "valid":
        total = record.counts.get("total", 0)
        messages.success(request, f"Dataset {record.name}: {total} images, layout {record.layout}.")
    else:
        messages.error(request, f"Dataset {record.name} rejected: {record.error}")
    return redirect("dataset_detail", pk=record.pk)


@require_POST
@requires(Role.ENGINEER)
def dataset_upload(request: HttpRequest) -> HttpResponse:
    form = DatasetUploadForm(request.POST, request.FILES)
    refused = getattr(request, "console_upload_refused", None)  # set by uploads.LimitedUploadHandler
    if refused:
        form = DatasetUploadForm(request.POST)
        form.is_valid()
        form.add_error(None, refused)
        audit(request.user, "dataset.upload_refused", name=request.POST.get("name", ""), error=refused)
        return _datasets_page(request, upload_form=form, status=413)
    if not form.is_valid():
        return _datasets_page(request, upload_form=form, status=400)
    archive = form.cleaned_data["archive"]
    try:
        limits = UploadLimits.current()
        check_quota(request.user.get_username(), archive.size, limits)
        path = datasets.store_upload(archive, form.cleaned_data["name"])
    except UploadRefused as exc:
        form.add_error("archive", str(exc))
        audit(request.user, "dataset.upload_refused", name=form.cleaned_data["name"], size=archive.size,
              error=str(exc))
        return _datasets_page(request, upload_form=form, status=413)
    record = Dataset.objects.create(
        name=form.cleaned_data["name"], source="zip", path=str(path), category=form.cleaned_data["category"],
        created_by=request.user.get_username(),
    )
    return _after_validation(request, record)


@require_POST
@requires(Role.ADMIN)  # a server path
def dataset_folder(request: HttpRequest) -> HttpResponse:
    form = DatasetFolderForm(request.POST)
    if not form.is_valid():
        return _datasets_page(request, folder_form=form, status=400)
    record = Dataset.objects.create(
        name=form.cleaned_data["name"], source="folder", path=form.cleaned_data["path"],
        category=form.cleaned_data["category"], created_by=request.user.get_username(),
    )
    return _after_validation(request, record)


@require_GET
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    record = get_object_or_404(Dataset, pk=pk)
    splits = {k: v for k, v in (record.counts or {}).items() if isinstance(v, dict)}
    return render(request, "console/dataset_detail.html", {"dataset": record, "splits": splits})


@require_POST
@requires(Role.ENGINEER)
def dataset_revalidate(request: HttpRequest, pk: int) -> HttpResponse:
    record = get_object_or_404(Dataset, pk=pk)
    record.status, record.error = "pending", ""
    record.save(update_fields=["status", "error"])
    audit(request.user, "dataset.revalidate", dataset=record.pk, name=record.name)
    return _after_validation(request, record)


@require_POST
@requires(Role.ENGINEER)
def dataset_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Free an uploaded dataset's disk (its ZIP and extraction): engineers their own uploads, admins any.

    A dataset that training jobs refer to keeps its row (the jobs' history), marked as deleted;
    a folder dataset only loses its row, never the folder.
    """
    from .roles import forbidden, role_of

    record = get_object_or_404(Dataset, pk=pk)
    if role_of(request.user) < Role.ADMIN and record.created_by != request.user.get_username():
        audit(request.user, "access.denied", path=request.path, method="POST", needed="admin")
        return forbidden(request, Role.ADMIN)
    removed = [str(p) for p in datasets.remove_upload(Path(record.path))] if record.source == "zip" and Path(
        record.path).parent == Path(settings.CONSOLE["UPLOADS_DIR"]) else []
    audit(request.user, "dataset.delete", dataset=record.pk, name=record.name, path=record.path, removed=removed)
    if record.jobs.exists():
        record.status, record.error = "invalid", f"deleted by {request.user.get_username()}"
        record.counts = {}
        record.save(update_fields=["status", "error", "counts"])
    else:
        record.delete()
    messages.success(request, f"Dataset {record.name} deleted ({len(removed)} files/folders removed).")
    return redirect("datasets")


# --- training ------------------------------------------------------------------------------------
@requires(Role.ENGINEER, methods=("POST",))
def training(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = TrainingForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            job = TrainingJob.objects.create(
                dataset=data["dataset"],
                kind=data["kind"],
                options={k: data[k] for k in ("name", "seed", "input_size", "epochs", "evaluate", "extra_args")},
                created_by=request.user.get_username(),
            )
            audit(request.user, "job.create", job=job.pk, kind=job.kind, dataset=job.dataset.name,
                  dataset_id=job.dataset.pk, **job.options)
            jobs.tick()
            messages.success(request, f"Training job {job.pk} queued.")
            return redirect("job_detail", pk=job.pk)
        status = 400
    else:
        form, status = TrainingForm(initial={"dataset": request.GET.get("dataset"), "seed": 0, "evaluate": True}), 200
    context = {"form": form, "jobs": TrainingJob.objects.all()[:50]}
    return render(request, "console/training.html", context, status=status)


def job_json(job: TrainingJob) -> dict:
    return {
        "id": job.pk,
        "status": job.status,
        "progress": job.progress,
        "step": job.step,
        "error": job.error,
        "kind": job.kind,
        "dataset": job.dataset.name,
        "result_card": job.result_card,
        "model_id": job.models.values_list("id", flat=True).first(),
        "log": jobs.log_tail(job),
        "finished": job.finished,
    }


@require_GET
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(TrainingJob, pk=pk)
    jobs.refresh(job)
    return render(request, "console/job_detail.html", {"job": job, "log": jobs.log_tail(job)})


@require_GET
def api_job(request: HttpRequest, pk: int) -> JsonResponse:
    job = get_object_or_404(TrainingJob, pk=pk)
    jobs.refresh(job)
    return JsonResponse(job_json(job))


@require_POST
@requires(Role.ENGINEER)
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = jobs.cancel(get_object_or_404(TrainingJob, pk=pk), request.user)
    messages.info(request, f"Cancel requested for job {job.pk}.")
    return redirect("job_detail", pk=job.pk)


# --- models --------------------------------------------------------------------------------------
@requires(Role.ADMIN, methods=("POST",))  # importing names a server path
def model_list(request: HttpRequest) -> HttpResponse:
    """Comparison table of every known model's metrics, with a Chart.js chart of one metric."""
    form = ImportModelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            model = register_card(Path(form.cleaned_data["card_path"]),
                                  report_dir=Path(form.cleaned_data["report_dir"])
                                  if form.cleaned_data["report_dir"] else None)
        except (CardError, OSError) as exc:
            form.add_error("card_path", str(exc))
        else:
            audit(request.user, "model.import", model=model.name, card=model.card_path,
                  report_dir=form.cleaned_data["report_dir"])
            messages.success(request, f"Model {model.name} imported.")
            return redirect("model_detail", pk=model.pk)
    models = list(TrainedModel.objects.all())
    columns = metric_columns(models)
    rows = [{"model": m, "values": [m.metrics.get(c) for c in columns]} for m in models]
    chart = {"labels": [f"{m.name} v{m.version} (#{m.pk})" for m in models],
             "metrics": {c: [m.metrics.get(c) for m in models] for c in columns}}
    status = 400 if request.method == "POST" else 200
    return render(request, "console/models.html",
                  {"rows": rows, "columns": columns, "chart": chart, "form": form}, status=status)


def _report_files(model: TrainedModel) -> tuple[bool, list[str]]:
    if not model.report_dir:
        return False, []
    folder = Path(model.report_dir)
    has_html = (folder / "report.html").is_file()
    images = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png") if "roc" in p.name.lower())
    return has_html, images


@require_GET
def model_detail(request: HttpRequest, pk: int) -> HttpResponse:
    model = get_object_or_404(TrainedModel, pk=pk)
    has_html, roc_images = _report_files(model)
    context = {
        "model": model,
        "card_json": json.dumps(model.card, indent=2),
        "has_report": has_html,
        "roc_images": roc_images,
        "metrics": sorted(model.metrics.items()),
        "models_dir": settings.CONSOLE["MODELS_DIR"],
        "pid_file": settings.CONSOLE["DAEMON_PID_FILE"],
        "promotions": AuditLog.objects.filter(action="model.promote", detail__card=model.card_path)[:10],
    }
    return render(request, "console/model_detail.html", context)


@require_GET
def model_report(request: HttpRequest, pk: int, path: str = "report.html") -> HttpResponse:
    model = get_object_or_404(TrainedModel, pk=pk)
    if not model.report_dir:
        raise Http404("this model has no evaluation report")
    return files.serve(files.contained(Path(model.report_dir), path))


@require_POST
@requires(Role.ADMIN)  # changes what the line runs
def model_promote(request: HttpRequest, pk: int) -> HttpResponse:
    model = get_object_or_404(TrainedModel, pk=pk)
    try:
        result = promote(model, settings.CONSOLE["MODELS_DIR"], settings.CONSOLE["DAEMON_PID_FILE"], request.user,
                         daemon_config=settings.CONSOLE.get("DAEMON_CONFIG"),
                         metrics_url=settings.CONSOLE.get("DAEMON_METRICS"),
                         confirm_timeout=float(settings.CONSOLE.get("PROMOTE_CONFIRM_S", 30.0)))
    except PromoteError as exc:
        messages.error(request, f"Promote failed: {exc}")
        audit(request.user, "model.promote_failed", model=model.name, card=model.card_path, error=str(exc))
    else:
        text = f"{model.name} copied to {settings.CONSOLE['MODELS_DIR']} ({len(result.copied)} files)"
        if result.config_change:
            text += f"; daemon config {result.config_change}"
        if result.signalled_pid:
            text += f"; daemon pid {result.signalled_pid} signalled to reload"
        else:
            text += f"; daemon NOT signalled: {result.signal_error}"
        live = ", ".join(result.live) or "nothing"
        if result.confirmed:
            messages.success(request, f"{text}. The daemon confirms {model.name} v{model.version} is live.")
        elif result.confirmed is False:
            messages.error(request, f"{text}. NOT deployed: the daemon still runs {live} "
                           f"({result.confirm_error or 'reload refused? see the daemon log'}).")
        else:
            messages.warning(request, f"{text}. Not confirmed: the console cannot see which model the daemon "
                             "runs (start it with --daemon-metrics).")
    return redirect("model_detail", pk=model.pk)


# --- audit ---------------------------------------------------------------------------------------
@require_GET
@requires(Role.ENGINEER)
def audit_log(request: HttpRequest) -> HttpResponse:
    return render(request, "console/audit.html", {"entries": AuditLog.objects.all()[:300]})
