"""The held-out test set: a `*.test.jsonl` companion, a blob named by metadata `test_blob`, or `test_split`.

- A companion or named blob is validated like the training file (the same validator, rules and model: an RFT
  run's test examples by RFT's rules, with the grader's fields); an invalid one rejects the run before anything
  is uploaded.
- `test_split` holds out a fraction of the dropped file by example hash (BLAKE2b of b"test:" + the line), a
  split independent of the validation split, which is then taken from what remains: a test example is never
  trained on nor used for validation. Identical lines hash alike, so a duplicate never straddles the sides.

Each test example becomes an eval item (shared/evalspec.py `eval_item`), written to the staging container as
`<run_id>/test-items.jsonl` (`{"item": {...}}` per line) and imported with purpose `evals`. The validation report
gets a `test_set` section: where it came from, its size, and how many test prompts also occur in training.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from azure.storage.blob import BlobClient, ContentSettings

from shared import rft
from shared.evalspec import eval_item
from shared.runs import BlobRef, RunSpec
from shared.services import Services
from shared.validation import ValidationOptions, validate
from shared.validation.split import Splitter

TEST_SALT = b"test:"
_SPOOL_BYTES = 8 * 1024 * 1024
MAX_TEST_ITEMS = 5000
"""An eval run answers every item on a deployment: more than this is refused (keep the test set small)."""


@dataclass
class HeldOut:
    items: BlobRef
    rest: BlobRef | None = None
    """The training file without the test examples (test_split only)."""
    report: dict[str, Any] = field(default_factory=dict)


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    tail = b""
    for chunk in chunks:
        tail += chunk
        *complete, tail = tail.split(b"\n")
        for line in complete:
            if line.strip():
                yield line.strip().lstrip(b"\xef\xbb\xbf")
    if tail.strip():
        yield tail.strip().lstrip(b"\xef\xbb\xbf")


def _prompt_key(item: dict[str, Any]) -> bytes:
    return hashlib.blake2b(json.dumps(item["input"], sort_keys=True).encode(), digest_size=8).digest()


def _items(lines: Iterable[bytes], spec: RunSpec) -> list[dict[str, Any]]:
    field = rft.reference_field(spec.reinforcement.grader) if spec.reinforcement else None
    out = []
    for line in lines:
        try:
            example = json.loads(line)
        except ValueError:
            continue
        item = eval_item(example, reference_field=field) if isinstance(example, dict) else None
        if item is not None:
            out.append(item)
    return out


def hold_out_test_set(
    services: Services,
    training: BlobClient,
    run_id: str,
    spec: RunSpec,
    test: BlobClient | None,
    options: ValidationOptions,
) -> tuple[HeldOut | None, str | None]:
    """`options`: the training file's (shared/ingest.py `validation_options`), so a test file is held to the
    run's rules (RFT's for an RFT run)."""
    staging = services.settings.staging_container
    rest_ref: BlobRef | None = None
    if test is not None:
        report = validate(test.download_blob().chunks(), model=spec.model, options=options)
        if not report.valid:
            first = "; ".join(f"line {e.line}: [{e.code}] {e.message}" for e in report.errors[:3])
            return None, f"the test file {test.blob_name} is invalid: {first}"
        items = _items(_lines(test.download_blob().chunks()), spec)
        source = f"{test.container_name}/{test.blob_name}"
        training_lines: Iterable[bytes] = _lines(training.download_blob().chunks())
    else:
        with (
            tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as rest,
            tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as held,
        ):
            splitter = Splitter(rest, held, spec.test_split, TEST_SALT)
            for line in _lines(training.download_blob().chunks()):
                splitter.add(line)
            result = splitter.finish()
            if result.valid_examples == 0:
                return None, (f"test_split {spec.test_split} held out no example of {result.train_examples}: "
                              "use a larger fraction or a .test.jsonl companion")
            rest_ref = BlobRef(container=staging, name=f"{run_id}/train-rest.jsonl")
            _upload(services, rest_ref, rest)
            held.seek(0)
            items = _items(_lines(iter(lambda: held.read(1 << 20), b"")), spec)
        rest_blob = services.blobs.get_blob_client(rest_ref.container, rest_ref.name)
        training_lines = _lines(rest_blob.download_blob().chunks())
        source = f"test_split {spec.test_split} (by example hash, disjoint from the validation split)"
    if not items:
        return None, "the test set has no example with an answer to compare with"
    if len(items) > MAX_TEST_ITEMS:
        return None, f"the test set has {len(items)} examples; an evaluation takes at most {MAX_TEST_ITEMS}"
    keys = {_prompt_key(i) for i in _items(training_lines, spec)}
    overlapping = [n for n, item in enumerate(items, start=1) if _prompt_key(item) in keys]
    items_ref = BlobRef(container=staging, name=f"{run_id}/test-items.jsonl")
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as out:
        for item in items:
            out.write(json.dumps({"item": item}, ensure_ascii=False).encode() + b"\n")
        _upload(services, items_ref, out)
    summary: dict[str, Any] = {
        "source": source,
        "examples": len(items),
        "overlap_with_training": len(overlapping),
        "overlap_examples": overlapping[:10],
        "items_blob": str(items_ref),
    }
    return HeldOut(items=items_ref, rest=rest_ref, report=summary), None


def _upload(services: Services, ref: BlobRef, stream: IO[bytes]) -> None:
    stream.seek(0)
    services.blobs.get_blob_client(ref.container, ref.name).upload_blob(
        stream, overwrite=True, content_settings=ContentSettings(content_type="application/jsonl")
    )
