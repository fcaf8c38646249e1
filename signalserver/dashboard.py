"""The operator dashboard in the admin (docs/deployment.md, "Metrics", "Dashboard"): live charts
of the figures the metrics port serves, for every staff account.

The page (`signalserver/dashboard.js`, charts by the vendored uPlot: no outside network) polls
`figures.json` every few seconds and turns the counters' differences into rates itself, so the
server keeps no history. Registrations per day come from the accounts' creation day instead
(counters start again at zero when their server restarts), asked for once every 30 polls.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.contrib import admin
from django.db.models import Count
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from accounts.models import Account
from signalserver.metrics_export import current_figures

DEFAULT_INTERVAL_SECONDS = 2.0
# `?interval=` (seconds) within these bounds; the browser tests poll faster than an operator.
MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS = 0.25, 60.0
REGISTRATION_DAYS = 14


def page(request):
    """The charts; `?interval=` sets the polling interval in seconds."""
    try:
        interval = float(request.GET.get("interval", DEFAULT_INTERVAL_SECONDS))
    except ValueError:
        interval = DEFAULT_INTERVAL_SECONDS
    if not MIN_INTERVAL_SECONDS <= interval <= MAX_INTERVAL_SECONDS:  # also NaN
        interval = DEFAULT_INTERVAL_SECONDS
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "interval": interval,
        "registration_days": REGISTRATION_DAYS,
    }
    return TemplateResponse(request, "signalserver/dashboard.html", context)


def figures(request):
    """`current_figures()` and the server's clock (seconds since the epoch), for rates."""
    return JsonResponse({"time": time.time(), **current_figures()})


def registrations(request):
    """Accounts created on each of the last REGISTRATION_DAYS days (today last), that still exist.

    One GROUP BY over the accounts of those days; `created` has no index, so it reads the table:
    the page asks for it every 30 polls (once a minute at 2 s), not at every poll."""
    today = timezone.localdate()
    first = today - timedelta(days=REGISTRATION_DAYS - 1)
    counts = dict(
        Account.objects.filter(created__gte=first).order_by().values_list("created").annotate(Count("pk"))
    )
    days = [first + timedelta(days=offset) for offset in range(REGISTRATION_DAYS)]
    return JsonResponse({"days": [{"day": day.isoformat(), "accounts": counts.get(day, 0)} for day in days]})


def urls() -> list:
    """The routes under /admin/dashboard/, among the admin site's own (signalserver/admin.py): in
    its namespace, behind its login (staff only), never cached, and like its other pages never
    answered over a socket (signalserver/tunnel.py)."""
    view = admin.site.admin_view
    return [
        path("dashboard/", view(page), name="dashboard"),
        path("dashboard/figures.json", view(figures), name="dashboard-figures"),
        path("dashboard/registrations.json", view(registrations), name="dashboard-registrations"),
    ]
