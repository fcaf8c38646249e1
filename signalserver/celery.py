"""The Celery app: workers run push delivery and purges; beat schedules the purges."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalserver.settings")

app = Celery("signalserver")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
