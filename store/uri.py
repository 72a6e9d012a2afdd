"""Where results live: a local folder, an NFS mount or an object-store URI, as pyarrow opens it.

A results path is `<results>` or `<results>/<sweep>`; an object store's options ride in the
URI's query string (`s3://b/r?endpoint_override=host:9000&scheme=http`) and are kept when a path
is joined to it. Paths inside a filesystem are joined with '/'.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.fs as pafs

from dlgsweep.errors import UserError

URI_HINT = "a local folder or a file://, s3:// or gs:// URI"


class StoreError(UserError):
    """A results path that cannot be opened or written; the message names the flag."""


# -- paths and URIs ---------------------------------------------------------------------------


def split_query(uri: str) -> tuple[str, str]:
    """`s3://b/p?endpoint_override=h:9000&scheme=http` -> ('s3://b/p', 'endpoint_override=...')."""
    if "://" in uri and "?" in uri:
        base, query = uri.split("?", 1)
        return base, query
    return uri, ""


def join(*parts: str) -> str:
    """Join path parts the way pyarrow filesystems (and URIs) spell them: with '/'."""
    return "/".join(p.rstrip("/") for p in parts[:-1]) + "/" + parts[-1].lstrip("/")


def join_uri(uri: str, *parts: str) -> str:
    """Append path parts to a path or URI, keeping a URI's query string (options) at its end."""
    base, query = split_query(uri)
    joined = join(base.rstrip("/"), *parts)
    return f"{joined}?{query}" if query else joined


def parent_uri(uri: str) -> str:
    """The folder holding `uri` (a path or URI), query string kept."""
    base, query = split_query(uri.rstrip("/"))
    parent = base.rsplit("/", 1)[0] if "/" in base else "."
    if parent.endswith(":/"):  # s3://bucket: its parent is the bucket itself
        parent = base
    return f"{parent}?{query}" if query else parent


def open_fs(uri: str, flag: str = "results") -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it, for a local path or an s3:// gs:// URI.

    Options of an object store ride in the URI's query string, as pyarrow reads them:
    `s3://bucket/path?endpoint_override=127.0.0.1:9000&scheme=http&region=us-east-1`.
    """
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, ValueError, OSError) as exc:
        scheme = uri.split("://", 1)[0]
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(
            f"{flag}: cannot open {uri!r} (scheme {scheme!r}: {reason}); expected {URI_HINT}"
        ) from None


def writable_folder(uri: str, flag: str) -> tuple[pafs.FileSystem, str]:
    """The folder at `uri` (a path or URI), created if absent: StoreError naming `flag` when it
    is a file, sits under a file, or cannot be created; nothing is written otherwise."""
    fs, path = open_fs(uri, flag)
    path = path.rstrip("/") or path
    try:
        info = fs.get_file_info(path)
    except (OSError, pa.ArrowException):  # a parent that is a file, on some filesystems
        info = None
    if info is not None and info.type == pafs.FileType.File:
        raise StoreError(f"{flag}: {uri!r} is a file; expected a folder: {URI_HINT}")
    if info is not None and info.type == pafs.FileType.Directory:
        return fs, path
    try:
        fs.create_dir(path, recursive=True)
    except (OSError, pa.ArrowException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(
            f"{flag}: cannot create {uri!r} ({reason}); expected {URI_HINT} this process can write"
        ) from None
    return fs, path
