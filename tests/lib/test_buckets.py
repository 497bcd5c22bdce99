"""Hash buckets are stable, cover 00..ff, and group into ranges."""

from navembed_pipeline.lib.buckets import BUCKETS, bucket_of, bucket_range, contiguous_ranges


def test_buckets_are_the_256_two_digit_hex_keys() -> None:
    assert len(BUCKETS) == 256 and BUCKETS[0] == "00" and BUCKETS[-1] == "ff"


def test_bucket_of_spreads_ids_over_all_buckets() -> None:
    spread = {bucket_of(f"track-{i}") for i in range(5000)}
    assert len(spread) == 256


def test_bucket_of_is_pinned_so_buckets_never_move_between_releases() -> None:
    assert bucket_of("abc123") == "58"
    assert bucket_of("navidrome-track-1") == "79"


def test_ranges_are_inclusive_and_bridge_small_gaps() -> None:
    assert bucket_range("0e", "11") == ["0e", "0f", "10", "11"]
    assert contiguous_ranges({"01", "02", "05"}) == [("01", "02"), ("05", "05")]
    assert contiguous_ranges({"01", "02", "05"}, max_gap=2) == [("01", "05")]
    assert contiguous_ranges(set()) == []
