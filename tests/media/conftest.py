import pytest

from tests.s3 import s3_bucket, s3_server  # noqa: F401 (fixtures for every media test module)


@pytest.fixture
def s3_media(settings, s3_server, s3_bucket):
    """This process's media store is a fresh bucket of the tests' S3 server (as a server process
    started with the MEDIA_S3_* variables would have it); the bucket's name is returned."""
    from media import store
    from signalserver.settings import media_storage

    values = {
        "MEDIA_S3_BUCKET": s3_bucket,
        "MEDIA_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "MEDIA_S3_ACCESS_KEY_ID": s3_server.access_key,
        "MEDIA_S3_SECRET_ACCESS_KEY": s3_server.secret_key,
        "MEDIA_S3_REGION": s3_server.region,
    }
    for name, value in values.items():
        setattr(settings, name, value)
    # Setting STORAGES makes Django build its storages again.
    settings.STORAGES = {
        **settings.STORAGES,
        "media": media_storage(
            bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, region=s3_server.region,
            access_key=s3_server.access_key, secret_key=s3_server.secret_key, addressing_style="path",
            root=settings.MEDIA_ROOT,
        ),
    }
    store.forget()
    yield s3_bucket
    store.forget()
