"""`navembed reembed --workers/--buckets/--job`: what is refused before any worker starts."""

import pytest

from navembed_pipeline.cli import main


def test_clear_existing_with_workers_is_refused(tmp_path, capsys) -> None:
    code = main(["reembed", "--workers", "2", "--clear-existing", "--data-dir", str(tmp_path),
                 "--navidrome-db", str(tmp_path / "navidrome.db")])
    assert code == 1 and "--clear-existing" in capsys.readouterr().err
    assert not (tmp_path / "dagster").exists()  # nothing was started


@pytest.mark.parametrize("buckets", ["7f-00", "00-100", "0g-ff", "00"])
def test_a_bucket_range_must_be_first_to_last_within_00_ff(buckets, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["reembed", "--buckets", buckets])
    assert exit_info.value.code == 2 and "FIRST-LAST" in capsys.readouterr().err


def test_a_worker_count_beyond_the_limit_is_refused(tmp_path, capsys) -> None:
    code = main(["reembed", "--workers", "17", "--data-dir", str(tmp_path), "--navidrome-db",
                 str(tmp_path / "navidrome.db")])
    assert code == 1 and "workers must be between 1 and 16" in capsys.readouterr().err
