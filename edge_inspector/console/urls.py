"""URL map of the console."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views
from .login import ConsoleLoginView

urlpatterns = [
    path("accounts/login/", ConsoleLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("static/<path:path>", views.static_file, name="static"),
    path("", views.dashboard, name="dashboard"),
    path("api/verdicts", views.api_verdicts, name="api_verdicts"),
    path("api/lines", views.api_lines, name="api_lines"),
    path("lines/", views.lines, name="lines"),
    path("lines/<str:line>/", views.line_detail, name="line_detail"),
    path("lines/<str:line>/<str:camera>/", views.camera_detail, name="camera_detail"),
    path("api/jobs/<int:pk>", views.api_job, name="api_job"),
    path("frames/<int:pk>/<str:kind>", views.frame_image, name="frame_image"),
    path("gallery/", views.gallery, name="gallery"),
    path("verdicts/<int:pk>/review", views.review_verdict, name="review_verdict"),
    path("datasets/", views.dataset_list, name="datasets"),
    path("datasets/upload", views.dataset_upload, name="dataset_upload"),
    path("datasets/folder", views.dataset_folder, name="dataset_folder"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset_detail"),
    path("datasets/<int:pk>/validate", views.dataset_revalidate, name="dataset_revalidate"),
    path("datasets/<int:pk>/delete", views.dataset_delete, name="dataset_delete"),
    path("training/", views.training, name="training"),
    path("training/<int:pk>/", views.job_detail, name="job_detail"),
    path("training/<int:pk>/cancel", views.job_cancel, name="job_cancel"),
    path("models/", views.model_list, name="models"),
    path("models/<int:pk>/", views.model_detail, name="model_detail"),
    path("models/<int:pk>/report/", views.model_report, name="model_report"),
    path("models/<int:pk>/report/<path:path>", views.model_report, name="model_report_file"),
    path("models/<int:pk>/promote", views.model_promote, name="model_promote"),
    path("audit/", views.audit_log, name="audit"),
]
