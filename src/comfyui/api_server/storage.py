"""Output upload: S3 with boto3 (the ``api-s3`` extra) and Azure Blob (``api-azure``) in worker
threads, Hugging Face Hub repositories with huggingface_hub, plain HTTP PUT/POST with aiohttp.

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


class HuggingFaceStorage:
    """Upload to a Hugging Face Hub repository with huggingface_hub, in worker threads.

    ``HF_ENDPOINT`` (another Hub, a mirror, a local one) and ``HF_TOKEN`` are read when the
    server first uploads (huggingface_hub reads ``HF_ENDPOINT`` once, at its import); without
    ``HF_TOKEN`` the token ``hf auth login`` stored is used. All outputs of a request go in one commit.
    """

    def __init__(self, env=None) -> None:
        import os

        from huggingface_hub import HfApi, constants

        env = os.environ if env is None else env
        self.api = HfApi(endpoint=env.get("HF_ENDPOINT") or constants.ENDPOINT, token=env.get("HF_TOKEN") or None)

    def url(self, repo: str, repo_type: str, revision: str, path: str) -> str:
        from urllib.parse import quote

        kind = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.api.endpoint.rstrip('/')}/{kind}{repo}/resolve/{quote(revision, safe='')}/{path}"

    def _commit(self, repo: str, repo_type: str, revision: str, files: dict[str, bytes], message: str) -> None:
        from huggingface_hub import CommitOperationAdd

        self.api.create_commit(repo, [CommitOperationAdd(path, data) for path, data in files.items()],
                               commit_message=message, repo_type=repo_type, revision=revision)

    async def upload(self, repo: str, repo_type: str, revision: str, files: dict[str, bytes],
                     message: str) -> list[str]:
        """Commit ``{path in repo: bytes}``; -> each file's resolve URL."""
        await asyncio.to_thread(self._commit, repo, repo_type, revision, files, message)
        return [self.url(repo, repo_type, revision, path) for path in files]


class HttpStorage:
    """PUT (or POST) each output's bytes to ``<url_prefix>/<filename>`` with aiohttp.

    Headers: the request's ``headers``, else ``HTTP_AUTH_HEADER_NAME``/``HTTP_AUTH_HEADER_VALUE``
    (comfyui-api's variables), and Basic auth from ``user:password@`` in the URL.
    """

    def __init__(self, session, env=None, timeout_s: float = 300) -> None:
        import os

        self.session = session
        self.env = os.environ if env is None else env
        self.timeout_s = timeout_s

    def headers(self, extra: dict[str, str]) -> dict[str, str]:
        name, value = self.env.get("HTTP_AUTH_HEADER_NAME"), self.env.get("HTTP_AUTH_HEADER_VALUE")
        return ({name: value} if name and value else {}) | extra

    async def upload(self, url: str, data: bytes, content_type: str, method: str, headers: dict[str, str]) -> str:
        """Send one file; -> its URL (without credentials). Raises on a non-2xx answer."""
        import base64
        from urllib.parse import unquote, urlsplit

        import aiohttp

        parts = urlsplit(url)
        sent = {"Content-Type": content_type}
        if parts.username is not None:  # user:password@ -> Basic auth, not part of the answered URL
            login = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            sent["Authorization"] = "Basic " + base64.b64encode(login).decode()
            parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        clean = parts.geturl()
        async with self.session.request(method, clean, data=data, headers=sent | self.headers(headers),
                                        timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as response:
            if response.status >= 300:
                raise RuntimeError(f"{method} {clean}: {response.status} {response.reason}: "
                                   f"{(await response.text())[:200]}")
        return clean
