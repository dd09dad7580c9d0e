"""The use cases both reading kinds share: ingest and status. Raises domain errors; knows
neither gRPC nor SQL."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from services.common import paging
from services.common.errors import InvalidArgument, NotFound
from services.common.ingest import Batch, Ingestor, ReadingOutcome, StreamOutcome
from services.common.timeconv import DAY_US
from services.common.validation import id_problem, require_id
from services.readings.kind import ReadingKind
from services.readings.reporting import ReportingSummary, summarize_reporting
from services.readings.repository import StatusRepository, StatusRow

Repository = TypeVar("Repository", bound=StatusRepository)

# ListReportingSummaries reads every reading of a page's devices over its window.
MAX_REPORTING_WINDOW_DAYS = 31


class ReadingService(Generic[Repository]):
    """A kind's use cases; its own (SummarizeConsumption, ListChargingSessions) live in a
    subclass that reaches its repository's own queries through `_repository`."""

    def __init__(self, kind: ReadingKind, repository: Repository, ingestor: Ingestor) -> None:
        self._kind = kind
        self._repository = repository
        self._ingestor = ingestor

    def ingest_one(self, reading: Any, device: str | None = None) -> ReadingOutcome:
        """Stores one reading once committed: accepted, a duplicate (stored before as sent) or
        a conflict (stored before with other values; not stored).

        `device`: the only id the caller may write (None: any). INVALID_ARGUMENT naming every
        field out of bounds; PERMISSION_DENIED for another device's id; UNAVAILABLE or
        RESOURCE_EXHAUSTED when the writers cannot take it (nothing stored)."""
        return self._ingestor.ingest_one(reading, device)

    def ingest_stream(self, batches: Iterable[Batch], device: str | None = None) -> StreamOutcome:
        """Stores the valid readings of a stream, answering once all of them are committed;
        the invalid ones are counted and listed, never fail the stream."""
        return self._ingestor.ingest_stream(batches, device)

    def get_status(self, entity_id: str) -> StatusRow:
        """The id's newest reading (see StatusRow); INVALID_ARGUMENT for a malformed id,
        NOT_FOUND for one that never reported."""
        require_id(self._kind.id_field, entity_id)
        status = self._repository.get_status(entity_id)
        if status is None:
            raise NotFound(f"{self._kind.device} {entity_id} has never reported")
        return status

    def list_statuses(self, page_size: int, page_token: str) -> tuple[list[StatusRow], str]:
        """One page of statuses in id order and the next page's token ("" on the last)."""
        return paging.paginate(
            page_size, page_token, self._repository.list_statuses, lambda row: row[0]
        )

    def reporting_summaries(
        self, start_us: int, end_us: int, gap_us: int, page_size: int, page_token: str
    ) -> tuple[list[ReportingSummary], str]:
        """One page, in id order, of every device that ever reported with its reporting over
        [start_us, end_us) (see services.readings.reporting), and the next page's token.
        INVALID_ARGUMENT naming the field: a window that is empty or longer than
        MAX_REPORTING_WINDOW_DAYS, a gap that is not positive, a malformed page_token."""
        violations = []
        if end_us <= start_us:
            violations.append(("end_time", "must be after start_time"))
        elif end_us - start_us > MAX_REPORTING_WINDOW_DAYS * DAY_US:
            violations.append(
                ("end_time", f"must be at most {MAX_REPORTING_WINDOW_DAYS} days after start_time")
            )
        if gap_us <= 0:
            violations.append(("gap", f"must be at least 1 µs, got {gap_us / 1e6:g} s"))
        after = paging.decode_token(page_token)
        if after is not None and id_problem(after) is not None:
            # Another listing's token (GetDataCompleteness' names more than an id).
            violations.append(("page_token", "is not a token this service issued"))
        if violations:
            raise InvalidArgument(violations)
        rows, next_token = paging.paginate(
            page_size,
            page_token,
            lambda after, limit: self._repository.reporting_summaries(
                after, limit, start_us, end_us, gap_us
            ),
            lambda row: row.device_id,
        )
        continuous = self._kind.reports_continuously
        return [
            summarize_reporting(row, start_us, end_us, gap_us, continuous=continuous)
            for row in rows
        ], next_token
