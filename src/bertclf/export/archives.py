"""Archives of a published export: a zip of all versions, a SageMaker model.tar.gz."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from bertclf.fileio import atomic_path


def _public_files(root: Path):
    """Files under root, skipping hidden (in-progress) directories."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            yield path, rel


def package_zip(base: Path, name: str) -> Path:
    """BASE/NAME.zip holding NAME/VERSION/... (as the BBC notebook's zip)."""
    target = base / f"{name}.zip"
    with (
        atomic_path(target, suffix=".zip") as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z,
    ):
        for path, rel in _public_files(base / name):
            z.write(path, Path(name) / rel)
    return target


def package_sagemaker(base: Path, name: str, version: int) -> Path:
    """model.tar.gz with VERSION/ at its root, as SageMaker's TF Serving container expects."""
    target = base / f"{name}-{version}.model.tar.gz"
    with atomic_path(target, suffix=".tar.gz") as tmp, tarfile.open(tmp, "w:gz") as tar:
        for path, rel in _public_files(base / name / str(version)):
            tar.add(path, arcname=str(Path(str(version)) / rel))
    return target
