"""A test-only URLconf: the project's routes plus three that fail, for the error-page tests (a
server bug in a DRF view and in a plain Django view, and a view that allows no method)."""

from django.urls import path
from django.views import View
from rest_framework.views import APIView

from signalserver import urls


class ServerBug(Exception):
    pass


class FailingApiView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        raise ServerBug("a bug in a DRF view")


def failing_django_view(request):
    raise ServerBug("a bug in a plain Django view")


urlpatterns = [
    path("v1/test/failing-api", FailingApiView.as_view()),
    path("v1/test/failing-django", failing_django_view),
    path("v1/test/no-methods", View.as_view()),  # Django's own 405 for every method
    *urls.urlpatterns,
]

handler400, handler404, handler500 = urls.handler400, urls.handler404, urls.handler500
