"""What weightspace may replace: only what it wrote itself.

A result (``OUT.npz`` + ``OUT.json``) is weightspace's when its sidecar says so; a run
directory when it holds a weightspace ``run.json`` and nothing but the run's own files; any
other directory that a command writes into (the demo's, a report's side files) keeps a
manifest, ``.weightspace-manifest.json``, of the files weightspace wrote there. Replacing an
output needs ``overwrite=True`` (``--overwrite``), and then removes exactly those files:
anything else there is refused, with a few of the foreign names in the one-line error, and
nothing is deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from ._lock import DirectoryLock
from .errors import WeightspaceError
from .store import BUFFERS, LOCK, METRICS, RUN_JSON, SNAPSHOT_RE, SNAPSHOTS, write_json

__all__ = ["MANIFEST", "Manifest", "check_result_target", "check_run_target", "claim_directory"]

MANIFEST = ".weightspace-manifest.json"
_OWN_NAMES = (MANIFEST, LOCK)  # weightspace's bookkeeping files, never user data
_TEMP = re.compile(r"^\..+\.tmp$")  # atomic_path's temporary names


def _shown(paths: list[Path], root: Path) -> str:
    names = [str(p.relative_to(root)) for p in paths[:3]]
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return ", ".join(names) + more


class Manifest:
    """The files weightspace wrote into ``directory`` (paths relative to it)."""

    def __init__(self, directory: str | os.PathLike, files: Iterable[str] = ()) -> None:
        self.directory = Path(directory)
        self.files = set(files)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Manifest:
        path = Path(directory) / MANIFEST
        if not path.is_file():
            return cls(directory)
        try:
            files = json.loads(path.read_text())["files"]
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise ValueError("'files' is not a list of names")
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise WeightspaceError(
                f"{path}: unreadable manifest ({e}); remove it and the outputs by hand"
            ) from None
        return cls(directory, files)

    def add(self, *paths: str | os.PathLike) -> None:
        """Record files (or every file under a directory) as weightspace's, and save (with
        what another writer in this directory recorded meanwhile, e.g. a report inside the
        demo)."""
        self.files |= Manifest.load(self.directory).files
        for p in map(Path, paths):
            found = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
            self.files.update(f.relative_to(self.directory).as_posix() for f in found)
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json(self.directory / MANIFEST, {"files": sorted(self.files)})

    def foreign(self, *under: Path) -> list[Path]:
        """Existing files below ``under`` (default: the directory) that weightspace did not
        write, sorted."""
        out = []
        for root in under or (self.directory,):
            found = [root] if root.is_file() else (root.rglob("*") if root.is_dir() else [])
            for f in found:
                if f.is_dir() or f.name in _OWN_NAMES:
                    continue
                if f.relative_to(self.directory).as_posix() not in self.files:
                    out.append(f)
        return sorted(out)

    def remove(self, *under: Path) -> None:
        """Delete the listed files below ``under``, then the directories left empty."""
        for root in under:
            if root.is_file():
                root.unlink()
            elif root.is_dir():
                for f in sorted(root.rglob("*"), reverse=True):
                    if f.is_file() or f.is_symlink():
                        f.unlink()
                    elif f.is_dir() and not any(f.iterdir()):
                        f.rmdir()
                if not any(root.iterdir()):
                    root.rmdir()
        self.files = {f for f in self.files if (self.directory / f).exists()}
        if (self.directory / MANIFEST).is_file():  # forget them on disk too
            write_json(self.directory / MANIFEST, {"files": sorted(self.files)})


def claim_directory(
    directory: str | os.PathLike, owned: Iterable[str], *, overwrite: bool, what: str
) -> Manifest:
    """Make ``directory`` ready for a command that writes the entries ``owned`` in it.

    Without ``overwrite`` an existing entry is an error; with it, the entries are removed
    when every file in them is weightspace's (the manifest's), else refused, deleting nothing.

    Returns:
        the directory's manifest, to record what the command writes.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise WeightspaceError(f"{what}: {str(directory)!r} is a file; give a directory")
    paths = [directory / name for name in owned if (directory / name).exists()]
    manifest = Manifest.load(directory)
    if not paths:
        return manifest
    if not overwrite:
        raise WeightspaceError(
            f"{what}: {str(directory)!r} already holds output ({_shown(paths, directory)}); "
            "pass overwrite=True to replace it, or choose another directory"
        )
    foreign = manifest.foreign(*paths)
    if foreign:
        raise WeightspaceError(
            f"{what}: {str(directory)!r} holds files weightspace did not write "
            f"({_shown(foreign, directory)}); nothing was replaced; move them or choose "
            "another directory"
        )
    manifest.remove(*paths)
    return manifest


def check_result_target(base: str | os.PathLike, *, overwrite: bool, what: str = "out") -> None:
    """Before computing a result for ``base`` (``base.npz`` + ``base.json``): an existing one
    needs ``overwrite``, and only a weightspace result (its sidecar says so) is replaced."""
    from .results import result_paths

    npz, side = result_paths(base)
    existing = [p for p in (npz, side) if p.exists() or p.is_symlink()]
    if not existing:
        return
    if not overwrite:
        raise WeightspaceError(
            f"{what}: {str(existing[0])!r} exists; pass overwrite=True to replace it, or "
            "choose another path"
        )
    if not _is_result_sidecar(side):
        raise WeightspaceError(
            f"{what}: {str(existing[0])!r} was not written by weightspace (no weightspace "
            "sidecar beside it); nothing was replaced; choose another path"
        )


def _is_result_sidecar(side: Path) -> bool:
    try:
        sidecar = json.loads(side.read_text()) if side.is_file() else None
    except (ValueError, OSError):
        return False
    return isinstance(sidecar, dict) and "kind" in sidecar and "weightspace_version" in sidecar


def check_run_target(run_dir: str | os.PathLike, *, overwrite: bool, what: str = "run_dir") -> None:
    """Before writing a new run at ``run_dir``: an existing run needs ``overwrite``, and is
    removed only when it holds nothing but a weightspace run's own files."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise WeightspaceError(f"{what}: {str(run_dir)!r} is a file; give a directory")
    if not any(run_dir.iterdir()):
        return
    if not overwrite:
        raise WeightspaceError(
            f"{what}: {str(run_dir)!r} already exists; pass overwrite=True to replace it, or "
            "choose a new directory"
        )
    foreign = _not_of_a_run(run_dir)
    if not (run_dir / RUN_JSON).is_file() or foreign:
        raise WeightspaceError(
            f"{what}: {str(run_dir)!r} is not only a weightspace run "
            f"({_shown(foreign, run_dir) if foreign else 'no run.json'}); nothing was "
            "replaced; choose a new directory"
        )
    with DirectoryLock(run_dir / LOCK, f"{what} {str(run_dir)!r}"):  # not while it is written
        shutil.rmtree(run_dir)


def _not_of_a_run(run_dir: Path) -> list[Path]:
    """Files in ``run_dir`` that are not a run's own (run.json, metrics, snapshots, buffers,
    weightspace's bookkeeping and temporary files)."""
    out = []
    for p in run_dir.iterdir():
        if p.name in (RUN_JSON, METRICS, *_OWN_NAMES) or _TEMP.match(p.name):
            continue
        if p.name in (SNAPSHOTS, BUFFERS) and p.is_dir():
            out += [
                f for f in p.iterdir() if not (SNAPSHOT_RE.match(f.name) or _TEMP.match(f.name))
            ]
        else:
            out.append(p)
    return sorted(out)
