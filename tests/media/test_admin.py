"""Operators see uploads per day and the storage attachments take, never an object key."""

from datetime import date

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from media.models import Upload, UploadDay

pytestmark = pytest.mark.django_db


def test_the_uploads_page_shows_counts_and_storage_used_and_no_keys(client):
    User.objects.create_superuser("operator", "op@example.org", "operator-password")
    client.login(username="operator", password="operator-password")
    now = timezone.now()
    Upload.objects.create(key="k" * 20, length=3 * 2**20, offset=3 * 2**20, created=now, completed=date(2026, 11, 2))
    Upload.objects.create(key="u" * 20, length=9 * 2**20, offset=2**20, created=now)
    UploadDay.objects.create(day=date(2026, 11, 2), uploads=7, bytes=123456)

    page = client.get("/admin/media/uploadday/").content.decode()

    assert "Stored: 1 attachments, 3.0 MiB; unfinished: 1 uploads, 1.0 MiB" in page
    assert "123456" in page and ">7<" in page
    assert "k" * 20 not in page and "u" * 20 not in page
    assert client.get("/admin/media/upload/").status_code == 404  # no list of uploads, keys and all
