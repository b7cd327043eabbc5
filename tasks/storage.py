"""Paths on local disk or S3 through pyarrow filesystems, with retries of transient I/O errors.

Commits never rename directories (S3 cannot): files go to a fresh attempt folder and a small manifest,
written last with one atomic put/rename, says which attempt is the committed one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from functools import lru_cache
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential


_FILESYSTEMS: dict[str, Callable[[], pafs.FileSystem]] = {}


def register_filesystem(scheme: str, factory: Callable[[], pafs.FileSystem]) -> None:
    """Serve `scheme://path` with a filesystem of your own (e.g. pyarrow.fs.PyFileSystem(FSSpecHandler))."""
    _FILESYSTEMS[scheme] = factory


def split_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    scheme, _, rest = uri.partition("://")
    if scheme in _FILESYSTEMS:
        return _FILESYSTEMS[scheme](), rest
    if scheme == "s3" and "?" not in rest:
        return _s3(_S3_OPTIONS or None), rest
    return pafs.FileSystem.from_uri(uri)


_S3_OPTIONS: tuple[tuple[str, str | None], ...] = ()


def configure_s3(options: tuple[tuple[str, str | None], ...] | None) -> None:
    """Use these S3 options (from an S3Credentials Block) in this process instead of the environment."""
    global _S3_OPTIONS
    _S3_OPTIONS = tuple(options or ())


@lru_cache(maxsize=4)
def _s3(options: tuple[tuple[str, str | None], ...] | None) -> pafs.S3FileSystem:
    """From a Block's options, or from the environment (AWS_*) as boto does, AWS_ENDPOINT_URL included
    (pyarrow itself ignores it) for MinIO, moto or an on-premises S3."""
    if options:
        return pafs.S3FileSystem(**{k: v for k, v in options if v})
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    return pafs.S3FileSystem(endpoint_override=endpoint or None,
                             region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"))


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def matches_any(patterns: Iterable[str], exc: BaseException) -> bool:
    """Ray's rule for retried_io_errors: substring first, then regular expression."""
    text = f"{type(exc).__name__}: {exc}"
    for pattern in patterns:
        if pattern in text:
            return True
        try:
            if re.search(pattern, text):
                return True
        except re.error:
            pass
    return False


def with_io_retries(patterns: list[str], attempts: int, fn: Callable[[], Any]) -> Any:
    """Run fn, retrying errors whose message matches a retried_io_errors pattern (tenacity)."""
    retrying = Retrying(stop=stop_after_attempt(attempts), wait=wait_exponential(multiplier=0.2, max=8),
                        retry=retry_if_exception(lambda e: isinstance(e, OSError | pa.ArrowException)
                                                 and matches_any(patterns, e)), reraise=True)
    return retrying(fn)


def write_json(uri: str, value: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    fs, path = split_uri(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(json.dumps(value, indent=1, default=str).encode())
    fs.move(tmp, path)


def read_json(uri: str) -> Any | None:
    fs, path = split_uri(uri)
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def write_parquet(uri: str, table: pa.Table) -> str:
    """Write table; return its schema as text (schema_text), which block reports carry."""
    fs, path = split_uri(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, path, filesystem=fs)
    return schema_text(table.schema)


def write_parquet_atomically(uri: str, table: pa.Table) -> None:
    """Readers see the old file or the whole new one (a temporary file, then one move)."""
    tmp = f"{uri}.{uuid.uuid4().hex}.tmp"
    write_parquet(tmp, table)
    fs, path = split_uri(uri)
    fs.move(split_uri(tmp)[1], path)


def schema_text(schema: pa.Schema) -> str:
    """A schema without its (pandas) metadata, as base64 of Arrow IPC: comparable and JSON-safe."""
    return base64.b64encode(schema.remove_metadata().serialize().to_pybytes()).decode()


def schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.BufferReader(base64.b64decode(text)))


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = split_uri(uri)
    return pq.read_table(path, filesystem=fs, columns=columns)


def read_parquet_schema(uri: str) -> pa.Schema:
    fs, path = split_uri(uri)
    with fs.open_input_file(path) as f:
        return pq.ParquetFile(f).schema_arrow


def exists(uri: str) -> bool:
    fs, path = split_uri(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(uri: str) -> list[str]:
    fs, path = split_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    prefix = uri[: len(uri) - len(path)]
    return sorted(prefix + i.path for i in infos if i.type == pafs.FileType.File)


def delete_dir(uri: str) -> None:
    fs, path = split_uri(uri)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)


def copy_atomically(src: str, dst: str) -> None:
    fs, s = split_uri(src)
    _, d = split_uri(dst)
    fs.create_dir(d.rsplit("/", 1)[0], recursive=True)
    tmp = f"{d}.{uuid.uuid4().hex}.tmp"
    fs.copy_file(s, tmp)
    fs.move(tmp, d)


def list_dirs(uri: str) -> list[str]:
    fs, path = split_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    prefix = uri[: len(uri) - len(path)]
    return [prefix + i.path for i in infos if i.type == pafs.FileType.Directory]


def remove_file(uri: str) -> None:
    fs, path = split_uri(uri)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def create_once(uri: str) -> bool:
    """Create an empty marker file; True only for the one caller that created it (local disk)."""
    fs, path = split_uri(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        return False
    with fs.open_output_stream(path):
        pass
    return True
