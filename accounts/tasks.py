"""Celery tasks of the accounts app: purges (scheduled by beat, see CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from accounts.profiles.services import purge_replaced_profiles
from accounts.retention import purge_account_records
from accounts.usernames.services import purge_expired_claims


@shared_task(ignore_result=True)
def purge_replaced_profiles_task() -> int:
    return purge_replaced_profiles()


@shared_task(ignore_result=True)
def purge_expired_username_claims_task() -> int:
    return purge_expired_claims()


@shared_task(ignore_result=True)
def purge_account_records_task() -> int:
    return purge_account_records()
