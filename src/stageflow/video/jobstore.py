"""A decoded job's media on storage both work pools reach (``[video] job_storage``, an fsspec URL).

With ``[video] inference_deployment`` set, the GPU child may run on another machine. By default the
job directory must then be a volume both pools mount at the same path; with ``job_storage`` set
(``s3://bucket/jobs``, ``sftp://user@host:22/srv/jobs``, ``gs://…``, ``file:///mnt/jobs``) the
parent uploads what inference reads (the audio, the kept frames, then ``job.json``) to
``<job_storage>/<job dir name>-<random>``, the child downloads it into a local temporary directory,
runs, writes ``inference.json`` back, and the parent reads it and removes the remote directory.

``job.json`` is written last: a child that finds it knows the upload finished. The child downloads
only the files ``job.json`` lists, each a plain file name, so remote content never writes outside
its temporary directory. The result is written as a temporary file renamed into place (object
stores, whose PUT is atomic, get it directly).

``[video.job_storage_options]`` is passed to the fsspec file system (``endpoint_url`` for an
S3-compatible server, ``key_filename`` for sftp, ...). It travels in the child's run parameters, so
it must hold no secret: a key ending in ``_env`` names an environment variable read on each worker
(``password_env = "JOBS_SFTP_PASSWORD"`` -> ``password``), and credentials otherwise come from the
backend's own standard places (``AWS_*`` variables or ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``,
ssh keys). For sftp, the server's host key is checked against ``known_hosts`` (default
``~/.ssh/known_hosts``); ``host_key_policy = "auto_add"`` opts out. No Prefect here.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stageflow.errors import ConfigError, JobFailed
from stageflow.video.pipeline.records import JOB_FILE, DecodedJob, Inference

log = logging.getLogger(__name__)

RESULT_FILE = "inference.json"
WHERE = "[video] job_storage"
#: Option keys that would put a secret in the run parameters: name an environment variable instead.
SECRET_KEYS = frozenset(
    {
        "password", "passphrase", "secret", "key", "token", "session_token", "credentials",
        "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "account_key",
        "sas_token", "connection_string", "client_secret", "pkey",
    }
)  # fmt: skip
#: The backend package each scheme needs beyond fsspec (all in the ``remote`` extra except gs/az).
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "sftp": "paramiko", "ssh": "paramiko", "gs": "gcsfs", "gcs": "gcsfs"}
#: Object stores: a PUT is atomic, and a rename is a copy.
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})
#: What a job file may be called (decode_job writes audio.npy and frame-NNNNNN.jpg).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def protocol_of(url: str) -> str:
    from fsspec.core import split_protocol

    protocol, _ = split_protocol(url)
    return (protocol or "file").split("::")[0]


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a job storage URL (None: it can): a scheme fsspec does not know, a
    relative path, or a password in the URL (it would travel in the run parameters)."""
    import fsspec
    from fsspec.core import split_protocol
    from fsspec.utils import infer_storage_options

    protocol, path = split_protocol(url)
    if protocol is None:
        if not os.path.isabs(url):
            return f"'{url}' is neither a URL (s3://, sftp://, gs://, file://) nor an absolute path"
        return None
    if protocol not in fsspec.available_protocols():
        return f"unknown storage scheme '{protocol}://' (e.g. s3://, gs://, sftp://, file://)"
    if "://" in url and infer_storage_options(url).get("password"):
        return (
            "a password in the URL would travel in the run parameters: remove it and set "
            "[video.job_storage_options] password_env = NAME (an environment variable on each worker)"
        )
    return None


def storage_problem(url: str) -> str | None:
    """``url_problem``, or that the scheme's backend package is not installed here."""
    problem = url_problem(url)
    if problem is None:
        problem = _backend_missing(protocol_of(url))
    return problem


def _backend_missing(protocol: str) -> str | None:
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        package = PACKAGES.get(protocol, f"the fsspec backend for {protocol}://")
        fix = "'stageflow[remote]'" if protocol in ("s3", "s3a", "sftp", "ssh") else package
        return f"{protocol}:// needs {package}: pip install {fix}"
    return None


def secret_keys(options: Mapping[str, Any]) -> list[str]:
    """The keys of ``options`` (nested tables included, dotted) that would hold a secret in clear."""
    found = []
    for key, value in options.items():
        if key.lower() in SECRET_KEYS:
            found.append(key)
        elif isinstance(value, Mapping):
            found += [f"{key}.{inner}" for inner in secret_keys(value)]
    return found


def storage_options(options: Mapping[str, Any], where: str = "[video.job_storage_options]") -> dict[str, Any]:
    """``options`` with each ``NAME_env = "VAR"`` replaced by ``NAME = $VAR`` (read here, on this
    worker); a secret-like key given in clear is refused (it would be visible in the run's
    parameters)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key.lower() in SECRET_KEYS:
            raise ConfigError(
                f"{where} {key}: a secret here would travel in the run parameters; set {key}_env = "
                "NAME (an environment variable on each worker) or use the backend's own variables (AWS_*)"
            )
        if key.endswith("_env") and len(key) > 4:
            if not isinstance(value, str) or value not in os.environ:
                raise ConfigError(f"{where} {key}: environment variable {value!r} is not set on this worker")
            out[key[:-4]] = os.environ[value]
        elif isinstance(value, Mapping):
            out[key] = storage_options(value, f"{where} {key}")
        else:
            out[key] = value
    return out


def _known_hosts_policy(path: Path) -> Any:
    """A paramiko missing-host-key policy that accepts only the keys the known_hosts file ``path``
    lists (fsspec's sftp client loads no host keys, so every server reaches this policy)."""
    import paramiko

    class KnownHosts(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            keys = paramiko.HostKeys(str(path)) if path.is_file() else paramiko.HostKeys()
            if not keys.check(hostname, key):
                host, _, port = hostname.strip("[").partition("]:")
                raise paramiko.SSHException(
                    f"host key of {hostname} is not in {path}: add it (ssh-keyscan -p {port or 22} "
                    f"{host} >> {path}), or set [video.job_storage_options] known_hosts = PATH"
                )

    return KnownHosts()


def _sftp_options(options: dict[str, Any]) -> dict[str, Any]:
    known = options.pop("known_hosts", None)
    if "host_key_policy" not in options:
        path = Path(known).expanduser() if known else Path.home() / ".ssh" / "known_hosts"
        options["host_key_policy"] = _known_hosts_policy(path)
    options.setdefault("timeout", 30)
    options.setdefault("banner_timeout", 30)
    options.setdefault("auth_timeout", 30)
    return options


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@contextmanager
def opened(url: str, options: Mapping[str, Any]) -> Iterator[tuple[Any, str]]:
    """(file system, path) for ``url``, a fresh connection closed on exit; every failure is one
    ``JobFailed`` line naming ``[video] job_storage`` (never the options: they may hold secrets)."""
    problem = url_problem(url)
    if problem:
        raise ConfigError(f"{WHERE} {url}: {problem}")
    protocol = protocol_of(url)
    missing = _backend_missing(protocol)
    if missing:
        raise ConfigError(f"{WHERE} {url}: {missing}")
    from fsspec.core import url_to_fs

    kwargs = storage_options(options)
    if protocol in ("sftp", "ssh"):
        kwargs = _sftp_options(kwargs)
    try:
        fs, path = url_to_fs(url, skip_instance_cache=True, **kwargs)
    except Exception as exc:
        raise JobFailed(f"{WHERE} {url}: cannot connect: {_describe(exc)}") from None
    try:
        yield fs, path.rstrip("/")
    finally:
        client = getattr(fs, "client", None)  # sftp: the paramiko SSHClient
        if protocol in ("sftp", "ssh") and client is not None:
            client.close()


@contextmanager
def _transfer(action: str, url: str) -> Iterator[None]:
    try:
        yield
    except (JobFailed, ConfigError):
        raise
    except Exception as exc:
        raise JobFailed(f"{WHERE}: cannot {action} {url}: {_describe(exc)}") from None


def media_files(job: DecodedJob) -> list[str]:
    """The files inference reads, each checked to be a plain name inside the job directory."""
    names = ([job.audio_file] if job.audio_file else []) + [f.file for f in job.frames]
    for name in names:
        if not SAFE_NAME.fullmatch(name) or name in (JOB_FILE, RESULT_FILE) or ".." in name:
            raise JobFailed(f"{WHERE}: job {job.video_id} lists an unsafe file name {name!r}")
    return names


def upload_job(job: DecodedJob, storage: str, options: Mapping[str, Any]) -> str:
    """Copy ``job``'s media, then its ``job.json``, to a new directory under ``storage``; returns that
    directory's URL (what the child is given)."""
    problem = storage_problem(storage)
    if problem:
        raise ConfigError(f"{WHERE} {storage}: {problem}")
    remote = f"{storage.rstrip('/')}/{Path(job.workdir).name}-{secrets.token_hex(6)}"
    names = media_files(job)
    local = Path(job.workdir)
    with opened(remote, options) as (fs, root), _transfer("upload the job to", remote):
        fs.makedirs(root, exist_ok=True)
        if names:
            fs.put([str(local / n) for n in names], [f"{root}/{n}" for n in names])
        fs.pipe_file(f"{root}/{JOB_FILE}", job.model_dump_json().encode())  # last: the upload is whole
    log.info("job %s uploaded to %s (%d files)", job.video_id, remote, len(names) + 1)
    return remote


def fetch_job(remote: str, options: Mapping[str, Any], into: Path, video_id: str | None = None) -> DecodedJob:
    """The job at ``remote`` downloaded into the local directory ``into`` (its ``workdir`` rewritten);
    ``video_id``: the job the caller expects there."""
    into.mkdir(parents=True, exist_ok=True)
    with opened(remote, options) as (fs, root), _transfer("download the job from", remote):
        if not fs.exists(f"{root}/{JOB_FILE}"):
            raise JobFailed(f"{WHERE}: {remote} has no {JOB_FILE} (the upload did not finish or was removed)")
        job = DecodedJob.model_validate_json(fs.cat_file(f"{root}/{JOB_FILE}"))
        if video_id is not None and job.video_id != video_id:
            raise JobFailed(f"{WHERE}: {remote} holds job {job.video_id!r}, not {video_id!r}")
        names = media_files(job)
        if names:
            fs.get([f"{root}/{n}" for n in names], [str(into / n) for n in names])
    job.workdir = str(into)
    job.save()
    return job


def put_result(remote: str, options: Mapping[str, Any], result: Inference) -> None:
    """Write ``inference.json`` into the job directory at ``remote`` (atomically for its reader)."""
    data = result.model_dump_json().encode()
    with opened(remote, options) as (fs, root), _transfer("write the result to", remote):
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        if protocols & OBJECT_STORES:
            fs.pipe_file(f"{root}/{RESULT_FILE}", data)
        else:
            tmp = f"{root}/{RESULT_FILE}.{secrets.token_hex(4)}.tmp"
            fs.pipe_file(tmp, data)
            fs.mv(tmp, f"{root}/{RESULT_FILE}")


def get_result(remote: str, options: Mapping[str, Any]) -> Inference:
    """The child's ``inference.json`` at ``remote``."""
    with opened(remote, options) as (fs, root), _transfer("read the result from", remote):
        path = f"{root}/{RESULT_FILE}"
        if not fs.exists(path):
            raise JobFailed(f"inference finished but {remote}/{RESULT_FILE} is missing")
        return Inference.model_validate_json(fs.cat_file(path))


def remove_job(remote: str, options: Mapping[str, Any]) -> None:
    """Delete the job directory at ``remote``; a failure is logged, never raised (the result is in)."""
    try:
        with opened(remote, options) as (fs, root):
            if fs.exists(root):
                fs.rm(root, recursive=True)
    except Exception as exc:
        log.warning("%s: could not remove %s: %s", WHERE, remote, _describe(exc))
