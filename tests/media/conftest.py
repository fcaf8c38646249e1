from tests.s3 import s3_bucket, s3_server  # noqa: F401 (fixtures for every media test module)
