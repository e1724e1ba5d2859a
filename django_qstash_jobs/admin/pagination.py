"""The job list's paginator: it never counts every row of a large table."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

#: Rows counted at most for one page of the list. Below it the count is exact; at it, the pages
#: stop there (a filter, a search or another order reaches the rows beyond).
COUNT_LIMIT = 10_000


class LimitedCountPaginator(Paginator):
    """Counts up to :data:`COUNT_LIMIT` rows, or takes PostgreSQL's estimate of a large table.

    ``SELECT COUNT(*)`` reads every row it counts: on a table of millions of jobs each page of the
    list would wait for it.
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        if not queryset.query.has_filters():
            estimate = planner_row_estimate(queryset)
            if estimate is not None and estimate >= COUNT_LIMIT:
                return estimate
        # Unordered: an ORDER BY in the counted subquery would sort every matching row first.
        return queryset.order_by().values("pk")[:COUNT_LIMIT].count()


def planner_row_estimate(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's estimate of the rows in ``queryset``'s table, or ``None`` if it has none.

    ``pg_class.reltuples`` is kept by VACUUM and ANALYZE (autovacuum runs them); it is -1 for a
    table never analysed (0 before PostgreSQL 14, which is just as well read as "count").
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])
