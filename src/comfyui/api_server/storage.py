"""S3 upload with boto3 (the ``api-s3`` extra) and Azure Blob upload (``api-azure``), run in
worker threads.

Credentials, region and endpoint come from boto3's standard sources: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for S3-compatible stores, profiles and
instance roles. One client serves every request (boto3 clients are thread-safe).
"""
from __future__ import annotations

import asyncio
import importlib.util
import threading

from ..jobs.submission import PromptRejected


class S3Storage:
    def __init__(self) -> None:
        self._client = None
        self._lock = threading.Lock()

    def check_available(self) -> None:
        if importlib.util.find_spec("boto3") is None:
            raise PromptRejected.of("invalid_request", "S3 is not available on this server",
                                    "install the api-s3 extra (boto3) to use 's3'")

    def client(self):
        with self._lock:
            if self._client is None:
                import boto3

                self._client = boto3.session.Session().client("s3")
            return self._client

    def _put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    async def upload(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put, bucket, key, data, content_type)

    def _get(self, bucket: str, key: str, max_bytes: int) -> tuple[bytes, str]:
        obj = self.client().get_object(Bucket=bucket, Key=key)
        if obj.get("ContentLength", 0) > max_bytes:
            obj["Body"].close()
            raise ValueError(f"{obj['ContentLength']} bytes > {max_bytes} bytes")
        return obj["Body"].read(), (obj.get("ContentType") or "").lower()

    async def download(self, url: str, max_bytes: int) -> tuple[bytes, str]:
        """``s3://bucket/key`` -> (bytes, content type)."""
        bucket, _, key = url[len("s3://"):].partition("/")
        return await asyncio.to_thread(self._get, bucket, key, max_bytes)


class AzureBlobStorage:
    """Azure Blob upload with azure-storage-blob (the ``api-azure`` extra), in worker threads.

    The account comes from ``AZURE_STORAGE_CONNECTION_STRING`` (the SDK's and the az CLI's
    variable; Azurite's too), else ``AZURE_STORAGE_ACCOUNT`` with azure-identity's
    ``DefaultAzureCredential`` (environment, managed identity, az login), as comfyui-api.
    """

    def __init__(self, env=None) -> None:
        import os

        self.env = os.environ if env is None else env
        self._client = None
        self._lock = threading.Lock()

    def check_available(self) -> None:
        if importlib.util.find_spec("azure.storage.blob") is None:
            raise PromptRejected.of("invalid_request", "Azure Blob storage is not available on this server",
                                    "install the api-azure extra (azure-storage-blob) to use 'azureBlobUpload'")
        if not (self.env.get("AZURE_STORAGE_CONNECTION_STRING") or self.env.get("AZURE_STORAGE_ACCOUNT")):
            raise PromptRejected.of("invalid_request", "Azure Blob storage is not configured on this server",
                                    "set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with credentials "
                                    "DefaultAzureCredential finds")

    def client(self):
        with self._lock:
            if self._client is None:
                from azure.storage.blob import BlobServiceClient

                connection = self.env.get("AZURE_STORAGE_CONNECTION_STRING")
                if connection:
                    self._client = BlobServiceClient.from_connection_string(connection)
                else:
                    from azure.identity import DefaultAzureCredential

                    account = self.env["AZURE_STORAGE_ACCOUNT"]
                    self._client = BlobServiceClient(f"https://{account}.blob.core.windows.net",
                                                     credential=DefaultAzureCredential())
            return self._client

    def url(self, container: str, blob: str) -> str:
        return f"{self.client().url.rstrip('/')}/{container}/{blob}"

    def _put(self, container: str, blob: str, data: bytes, content_type: str) -> None:
        from azure.storage.blob import ContentSettings

        self.client().get_blob_client(container, blob).upload_blob(
            data, overwrite=True, content_settings=ContentSettings(content_type=content_type))

    async def upload(self, container: str, blob: str, data: bytes, content_type: str) -> str:
        """Upload; -> the blob's URL."""
        await asyncio.to_thread(self._put, container, blob, data, content_type)
        return self.url(container, blob)
