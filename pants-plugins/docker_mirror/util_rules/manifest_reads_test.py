"""Which `method="copy"` images share a batch of registry reads."""

from __future__ import annotations

from docker_mirror.util_rules.manifest_reads import BATCH_SIZE, batch_images, destinations_to_check
from docker_mirror.util_rules.destinations import Destination
from pants.engine.addresses import Address


def images(count: int) -> list[Address]:
    return [Address("src", target_name="m", generated_name=f"img{i:03d}") for i in range(count)]


def test_every_image_is_in_exactly_one_batch_of_at_most_the_batch_size() -> None:
    addresses = images(2 * BATCH_SIZE + 5)
    batches = batch_images(reversed(addresses))
    assert set(batches) == set(addresses)
    distinct = {batch for batch in batches.values()}
    assert sorted(len(batch) for batch in distinct) == [5, BATCH_SIZE, BATCH_SIZE]
    assert sorted(a for batch in distinct for a in batch) == sorted(addresses)
    for address, batch in batches.items():
        assert address in batch and list(batch) == sorted(batch)


def test_batches_follow_address_order_whatever_the_input_order() -> None:
    addresses = images(10)
    assert batch_images(addresses, size=4) == batch_images(reversed(addresses), size=4)
    assert batch_images(addresses, size=4)[addresses[5]] == tuple(addresses[4:8])
    assert batch_images([]) == {}


def test_only_destinations_that_would_be_written_are_checked() -> None:
    pushed = Destination("127.0.0.1:5000", "mirror", "mirror/app", "1")
    skipped = Destination("archive.lan", "archive", "app", "1", skipped_by="`skip_push`")
    assert destinations_to_check((pushed, skipped), skip_push=False) == (pushed,)
    assert destinations_to_check((pushed, skipped), skip_push=True) == ()
