"""The session's attachment cache forgets files nobody used for `bus.files_ttl_days`."""

import os
import time
from pathlib import Path

from services.session import media_store

DAY_S = 86_400


def test_files_unused_past_the_age_are_removed_and_used_ones_stay(tmp_path: Path):
    objects = tmp_path / "objects"
    objects.mkdir()
    old, fresh, leftover = objects / "a1", objects / "b2", objects / ".part_x.a1"
    for path in (old, fresh, leftover):
        path.write_bytes(b"x")
    long_ago = time.time() - 40 * DAY_S
    os.utime(old, (long_ago, long_ago))
    os.utime(leftover, (long_ago, long_ago))
    ids = tmp_path / "file_ids" / "api" / "sha"
    ids.parent.mkdir(parents=True)
    ids.write_text("file_1")
    os.utime(ids, (long_ago, long_ago))

    removed = media_store.prune(tmp_path, 30 * DAY_S)

    assert removed == 2
    assert sorted(p.name for p in objects.iterdir()) == ["b2"]
    assert ids.read_text() == "file_1"  # an upload costs more than its id's few bytes


def test_a_use_refreshes_the_time_so_pruning_keeps_the_file(tmp_path: Path):
    path = tmp_path / "objects" / "c3"
    path.parent.mkdir()
    path.write_bytes(b"image")
    long_ago = time.time() - 40 * DAY_S
    os.utime(path, (long_ago, long_ago))

    assert media_store.used_bytes(path) == b"image"
    assert media_store.prune(tmp_path, 30 * DAY_S) == 0
    assert path.exists()


def test_a_missing_cache_prunes_nothing(tmp_path: Path):
    assert media_store.prune(tmp_path / "nowhere", DAY_S) == 0
