"""JSON answers for requests that never reach a view (unknown route, server error)."""

from django.http import JsonResponse


def not_found(request, exception=None):
    return JsonResponse({"code": 404, "message": "Not found"}, status=404)


def server_error(request):
    return JsonResponse({"code": 500, "message": "Internal server error"}, status=500)


def bad_request(request, exception=None):
    return JsonResponse({"code": 400, "message": "Bad request"}, status=400)
