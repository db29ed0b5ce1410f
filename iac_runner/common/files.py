"""The one way the runner writes a file the outside world reads: atomically, with an explicit mode."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from iac_runner.common.errors import ConfigError


def write_atomic(path: Path, text: str, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`.

    A reader never sees a half-written file, and a failed write leaves any previous file as it was.
    The temp file is created with `mode` from the start so a secret is never briefly world-readable.
    `durable=False` skips the fsync (a few ms each) for a file of the run's own work dir, which goes away with
    the run: no crash can leave anything there worth keeping.
    """
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable_dir(path: Path) -> str | None:
    """Why a file cannot be created at `path`, or None when it can."""
    directory = path.parent
    if path.is_dir():
        return f"{path} is a directory"
    if not directory.is_dir():
        return f"its directory {directory} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"its directory {directory} is not writable by this user (uid {os.getuid()})"
    return None


def read_text(path: Path, what: str, *, where: str = "") -> str:
    """A UTF-8 text file the user gave (a template, a settings file, an inputs file): every way it cannot be read
    is a ConfigError naming the file and how to fix it, never a traceback."""
    shown = where or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"The {what} {path} does not exist.", where=shown, fix="Point at an existing file.") from None
    except IsADirectoryError:
        raise ConfigError(
            f"The {what} {path} is a directory, not a file.", where=shown, fix="Point at a regular file."
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"The {what} {path} cannot be read: {exc.strerror}.",
            where=shown,
            fix=f"Make it readable by the runner's user (uid {os.getuid()}).",
        ) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(
            f"The {what} {path} is UTF-16 encoded; it must be UTF-8.",
            where=shown,
            fix="Save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`).",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"The {what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}).",
            where=f"{path}:{line}",
            fix="Save it as UTF-8.",
        ) from None


def mirror(folder: Path, top: Path, into: Path, extra: Mapping[str, Path] | None = None) -> Path:
    """A writable view of `folder` under `into`, at the same path relative to `top`: the entries of `folder` and of
    every folder between it and `top` are symlinks to the originals, so relative references (`../modules/x`, a
    program's `../shared`) resolve as they would in place; `extra` files join the view (replacing entries of the
    same name). Whatever an engine writes in the view stays in `into`: the user's folder is never written."""
    parts = folder.relative_to(top).parts
    source, view = top, into
    view.mkdir(parents=True, exist_ok=True)
    for index in range(len(parts) + 1):
        inner = parts[index] if index < len(parts) else None
        for entry in source.iterdir():
            if entry.name != inner:
                (view / entry.name).symlink_to(entry)
        if inner is None:
            break
        source, view = source / inner, view / inner
        view.mkdir()
    for name, path in (extra or {}).items():
        link = view / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(path)
    return view
