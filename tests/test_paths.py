"""Where the real test data is found: ``../shared/data`` beside the repository, or ``$SSDLITE_DATA``,
which, when set, is authoritative (so ``SSDLITE_DATA=/nonexistent`` runs the tests as a user's clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import missing_data_reason
from ssdlite import _paths


@pytest.fixture()
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A repository with ``../shared/data`` beside it, another data folder elsewhere; run from the repository."""
    repo, beside, elsewhere = tmp_path / "repo", tmp_path / "shared" / "data", tmp_path / "elsewhere"
    for d in (repo, beside, elsewhere):
        d.mkdir(parents=True)
    monkeypatch.setattr(_paths, "REPO_ROOT", repo)
    monkeypatch.chdir(repo)
    monkeypatch.delenv(_paths.DATA_ENV, raising=False)
    return {"repo": repo, "beside": beside, "elsewhere": elsewhere}


def test_found_beside_the_repository_when_unset(layout, monkeypatch) -> None:
    assert _paths.shared_data_dir() == layout["beside"]
    monkeypatch.setenv(_paths.DATA_ENV, "")  # empty counts as unset
    assert _paths.shared_data_dir() == layout["beside"]


def test_explicit_folder_wins(layout, monkeypatch) -> None:
    monkeypatch.setenv(_paths.DATA_ENV, str(layout["elsewhere"]))
    assert _paths.shared_data_dir() == layout["elsewhere"]


@pytest.mark.parametrize("target", ["nonexistent", "a_file"])
def test_explicit_non_folder_means_absent(layout, monkeypatch, target) -> None:
    """../shared/data exists, but an explicit SSDLITE_DATA that is not a folder is not overridden by it."""
    path = layout["repo"].parent / target
    if target == "a_file":
        path.write_text("not a folder")
    monkeypatch.setenv(_paths.DATA_ENV, str(path))
    assert _paths.shared_data_dir() is None
    from ssdlite.deploy.verify import default_verify_images

    generated = default_verify_images()  # no real photos: generated scenes, so --verify works in any clone
    assert len(generated) == 4 and all(p.suffix == ".png" and p.is_file() for p in generated)
    assert default_verify_images() == generated  # written once, reused
    reason = missing_data_reason("photos/darknet", "real photos")
    assert reason == f"needs the real photos/darknet (real photos): {_paths.DATA_ENV}={path} is not a folder"


def test_skip_reason_names_the_missing_subfolder(layout, monkeypatch) -> None:
    monkeypatch.setenv(_paths.DATA_ENV, str(layout["elsewhere"]))
    (layout["elsewhere"] / "photos").mkdir()
    assert missing_data_reason("photos", "real photos") is None
    assert missing_data_reason("videos", "a real video") == f"needs the real videos (a real video): {layout['elsewhere'] / 'videos'} is absent"
