"""The verdicts behind the embedding assets' checks, on hand-made rows (the Dagster runs are in tests/pipeline)."""

from datetime import datetime
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.engine.summary import summarize_plan
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.library.segments import track_fingerprint
from navembed_pipeline.lib.library.upload_ids import UPLOAD_PREFIX
from navembed_pipeline.lib.store import StoredInfo
from navembed_pipeline.lib.store.health import VectorAudit, account_bucket


def track(track_id: str, title: str = "Song") -> Track:
    return Track(id=track_id, path=Path(f"/music/{track_id}.flac"), title=title, artist="Artist", album="Album",
                 album_artist="Artist", duration_seconds=60.0, size=1000, updated_at=datetime(2026, 1, 1),
                 library_id=1, library_name="Music", suffix="flac")


def row(t: Track, segment: int = 1, *, version: str = "dsp:2", bucket: str | None = None, **vectors) -> dict:
    return {"track_id": t.id, "segment": segment, "bucket": bucket or bucket_of(t.id),
            "fingerprint": track_fingerprint(t), "model_version": version, **vectors}


def unit(dim: int) -> list[float]:
    vector = np.ones(dim, dtype=np.float32)
    return list(vector / np.linalg.norm(vector))


def test_a_bucket_accounts_for_embedded_failed_and_missing_tracks() -> None:
    done, broken, lost = track("a", "Done"), track("b", "Broken"), track("c", "Lost")
    account = account_bucket("00", [done, broken, lost], [row(done)], {broken.id: "not a readable audio file"})
    assert account.embedded == 1 and account.rows == 1 and not account.passed
    assert [(p.name, p.detail) for p in account.failed] == [("Artist - Broken", "not a readable audio file")]
    assert [p.track_id for p in account.unaccounted] == ["c"]


def test_vectors_of_an_older_file_version_do_not_account_for_a_track() -> None:
    changed = track("a")
    old = {**row(changed), "fingerprint": "older"}
    account = account_bucket("00", [changed], [old], {})
    assert "older version of the file" in account.unaccounted[0].detail


def test_the_audit_finds_every_kind_of_damage_and_spares_uploads() -> None:
    t = {name: track(name) for name in ("ok", "gap", "nan", "long", "stale")}
    audit = VectorAudit(model_version="dsp:2", declared={"embedding": 4}, schema={"embedding": 4})
    present = {x.id: x for x in t.values()}
    rows = [row(t["ok"]), row(t["gap"], 1), row(t["gap"], 3), row(t["nan"]), row(t["long"]),
            row(t["stale"], version="dsp:1"), row(track("gone")), row(track(UPLOAD_PREFIX + "x"))]
    by_bucket: dict[str, list[dict]] = {}
    for r in rows:
        by_bucket.setdefault(r["bucket"], []).append(r)
    for bucket, bucket_rows in by_bucket.items():
        audit.add(bucket, bucket_rows, present)
    audit.check_vectors(row(t["ok"], embedding=unit(4)))
    audit.check_vectors(row(t["nan"], embedding=[float("nan")] * 4))
    audit.check_vectors(row(t["long"], embedding=unit(5)))
    audit.check_vectors(row(t["stale"], embedding=[1.0, 1.0, 0.0, 0.0]))
    invalid = {kind: [p.track_id for p in problems] for kind, problems in audit.invalid().items()}
    assert invalid == {"dimension": ["long"], "non_finite": ["nan"], "not_unit_norm": ["stale"],
                       "segments": ["gap"], "orphan": ["gone"]}
    assert [p.track_id for p in audit.stale()] == ["stale"] and not audit.vectors_valid
    assert audit.vectors_checked == 4 and audit.rows == 8


def test_a_collection_of_other_dimensions_is_a_schema_mismatch() -> None:
    audit = VectorAudit(model_version="dsp:2", declared={"embedding": 4}, schema={"embedding": 3})
    assert audit.schema_mismatch and not audit.vectors_valid


def test_a_row_filed_under_the_wrong_bucket_is_reported() -> None:
    t = track("a")
    wrong = next(b for b in ("00", "01") if b != bucket_of(t.id))
    audit = VectorAudit(model_version="dsp:2", declared={"embedding": 4}, schema={})
    audit.add(wrong, [row(t, bucket=wrong)], {t.id: t})
    assert [p.track_id for p in audit.invalid()["bucket"]] == ["a"]


def test_the_plan_summary_classifies_every_track_once() -> None:
    new, changed, failed, same = track("n"), track("c"), track("f"), track("s")
    stored = {changed.id: StoredInfo("older", "dsp:2", 1), same.id: StoredInfo(track_fingerprint(same), "dsp:2", 1),
              failed.id: StoredInfo(track_fingerprint(failed), "dsp:2", 1)}
    plan = summarize_plan(model="dsp", version="dsp:2", tracks_by_bucket={"00": [new, changed], "01": [failed, same]},
                          stored=stored, failed={failed.id: "boom"}, to_embed=3, vanished=2)
    assert (plan.new, plan.changed, plan.failed, plan.unchanged, plan.tracks) == (1, 1, 1, 1, 4)
    assert plan.line() == ("dsp: 4 tracks in 2 bucket(s) — 1 new, 1 changed, 1 failed before, 1 unchanged → "
                           "3 to embed; 2 gone from Navidrome (vectors deleted)")
