"""The hash-partitioned map-reduce behind de-duplication gives the same answer for any partition count."""
import functools

from llamaops.platform.data.dedup import _line_keys, _repeated_lines, _text_key, later_copies
from llamaops.platform.data.near_dedup import MinHasher, _band_keys, _bucket_pairs, duplicate_clusters
from llamaops.platform.data.shuffle import map_reduce, partition_of

TEXTS = [f"document {i % 7} " * 20 for i in range(40)]  # each text 5-6 times, spread over the input


def test_every_record_of_a_key_meets_in_one_partition():
    keys = [f"k{i}".encode() for i in range(200)]
    for partitions in (1, 2, 5):
        assert [partition_of(k, partitions) for k in keys] == [partition_of(k, partitions) for k in keys]
        assert len({partition_of(k, partitions) for k in keys}) == partitions


def test_exact_copies_found_whatever_the_partitions():
    expected = sorted(i for i in range(40) if i >= 7)  # the first of each of the 7 texts is kept
    for partitions in (1, 2, 3, 8):
        assert map_reduce(TEXTS, _text_key, later_copies, workers=1, partitions=partitions) == expected


def test_repeated_lines_and_near_pairs_do_not_depend_on_partitions():
    items = [(f"menu home about\nline {i}\nfooter {i % 2}", False) for i in range(12)]
    keys = functools.partial(_line_keys, bucket_documents=6)
    reduce = functools.partial(_repeated_lines, max_repeats=3)
    one = map_reduce(items, keys, reduce, 1, partitions=1)
    assert one == map_reduce(items, keys, reduce, 1, partitions=4)
    # "menu home about" is in all 6 documents of each bucket; "footer 0/1" in 3 per bucket: kept.
    assert {line for _, line in one} == {"menu home about"} and len(one) == 12

    hasher = MinHasher(bands=8, rows=4)
    signatures = [hasher.signature_of(text) for text in TEXTS]
    band_keys = functools.partial(_band_keys, rows=4)
    pairs = map_reduce(signatures, band_keys, _bucket_pairs, 1, partitions=1)
    assert pairs == map_reduce(signatures, band_keys, _bucket_pairs, 1, partitions=5)
    assert duplicate_clusters(pairs, len(TEXTS)) == [i % 7 for i in range(40)]


def test_union_find_joins_chains_into_the_smallest_index():
    assert duplicate_clusters([(3, 4), (1, 4), (5, 6)], 7) == [0, 1, 2, 1, 1, 5, 5]
