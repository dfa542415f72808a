"""A local stand-in for Alibaba Cloud Tablestore (OTS) that the real `tablestore` SDK (`OTSClient`) talks to.

It serves the table and row API the SDK sends, checks conditions atomically and signatures as Tablestore does, records
every request, and fails on demand. What it serves, its control plane (faults, tables) and how to run it:
docs/stand-ins.md#tablestore.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from waba_local.stand_ins.stand_in_base import (
    Answer,
    FaultyStandIn,
    StandInHandler,
    cli_parser,
    serve_until_interrupted,
)
from waba_local.stand_ins.tablestore_protocol import (
    DELETE_ALL_VERSION,
    DELETE_ONE_VERSION,
    INCREMENT,
    NOT_SERVED,
    OPERATIONS,
    RT_AFTER_MODIFY,
    RT_PK,
    UNSUPPORTED,
    Authenticated,
    GetRow,
    KeyRing,
    OtsError,
    OtsRequest,
    TableSpec,
    Value,
    WriteRow,
    answer_headers,
    check_column_name,
    check_instance_name,
    check_primary_key,
    check_table_name,
    claimed_access_key_id,
    condition_holds,
    describe_table_response,
    encode_row,
    error_body,
    evaluate,
    get_row_response,
    invalid,
    list_table_response,
    new_request_id,
    parse_create_table,
    parse_get_row,
    parse_table_name,
    parse_write,
    route,
    table_of,
    value_type,
    verify,
    write_response,
)

DEFAULT_ACCESS_KEY_ID = "LTAI5tLocalOtsKey"
DEFAULT_ACCESS_KEY_SECRET = "local-ots-secret"
INSTANCE = "waba-local"
MAX_BODY = 5 << 20  # more than a PutRow may carry; refuse to buffer much more (OTSRequestBodyTooLarge)


@dataclass(frozen=True)
class RequestRecord:
    """One answered request. status 0 means the connection was dropped without an answer."""

    operation: str  # the action (GetRow, PutRow, ...), or "Unsupported" for a path that names none
    table: str | None
    status: int
    code: str  # the Tablestore error code ("" on success, "Dropped" for a dropped connection)
    request_id: str
    access_key_id: str | None  # the id the request named (not a secret), checked out or not


@dataclass
class _Cell:
    value: Value
    timestamp: int  # milliseconds, the cell's version


@dataclass
class _Table:
    spec: TableSpec
    created: float
    rows: dict[tuple[Value, ...], dict[str, _Cell]] = field(default_factory=dict)


class _Handler(StandInHandler):
    SERVER_NAME, MAX_BODY, REQUEST = "tablestore-stand-in", MAX_BODY, OtsRequest
    do_GET = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_POST = StandInHandler._dispatch


class TablestoreStandIn(FaultyStandIn[RequestRecord]):
    """One Tablestore instance on 127.0.0.1 with its tables, AccessKeys and STS credentials.

    `clock` (epoch seconds) judges x-ots-date and STS expiry, dates the answers and versions the cells. The SDK
    refuses an answer dated more than 15 minutes from its own clock, so a clock that runs far ahead makes the client
    fail with OTSClientError as well as the stand-in refuse the request."""

    OPERATIONS, ERROR, HANDLER = OPERATIONS, OtsError, _Handler
    THREAD_NAME, DESCRIPTION = "tablestore-stand-in", "the Tablestore stand-in"
    FAIL_STATUS, FAIL_CODE = 503, "OTSServerBusy"

    def __init__(
        self,
        instance: str = INSTANCE,
        credentials: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        check_instance_name(instance)
        static = {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET} if credentials is None else dict(credentials)
        super().__init__(host, port, KeyRing(static), clock)
        self.instance = instance
        self._tables: dict[str, _Table] = {}
        self.internal_errors: list[str] = []  # "Operation: ExceptionType" of answers that were 500 by our own fault

    # --- setup and inspection --------------------------------------------------------------------------------

    def create_table(self, name: str, primary_key: str = "pk") -> None:
        """Create a table with one STRING primary key column (no request recorded). Creating it again with the same
        key is a no-op; names Tablestore refuses (letters, digits and "_" only) raise OtsError, as CreateTable would."""
        check_table_name(name)
        check_column_name(primary_key)
        spec = TableSpec(name, ((primary_key, "STRING"),))
        with self._lock:
            existing = self._tables.get(name)
            if existing is not None and existing.spec.primary_key != spec.primary_key:
                raise OtsError("OTSObjectAlreadyExist")
            if existing is None:
                self._tables[name] = _Table(spec, self._clock())

    def rows(self, table: str) -> dict[Any, dict[str, Any]]:
        """Every row: primary key value (a tuple of them for a table with several key columns) -> attribute columns
        (latest values: str, int, float, bool, or bytes for BINARY)."""
        with self._lock:
            found = self._table(table)
            single = len(found.spec.primary_key) == 1
            return {
                (key[0] if single else key): {name: cell.value for name, cell in sorted(cells.items())}
                for key, cells in sorted(found.rows.items(), key=lambda item: repr(item[0]))
            }

    def put_row(self, table: str, primary_key: Any, columns: Mapping[str, Value]) -> None:
        """Write a row directly (no request recorded, no condition), replacing it as PutRow does."""
        key = primary_key if isinstance(primary_key, tuple) else (primary_key,)
        now_ms = int(self._clock() * 1000)
        for name, value in columns.items():
            check_column_name(name)
            _check_value(value)
        with self._lock:
            found = self._table(table)
            if len(key) != len(found.spec.primary_key):
                raise OtsError("OTSInvalidPK")
            check_primary_key(found.spec, [(column, value) for (column, _), value in zip(found.spec.primary_key, key)])
            found.rows[key] = {name: _Cell(value, now_ms) for name, value in columns.items()}

    # --- the API ---------------------------------------------------------------------------------------------

    def handle(self, request: OtsRequest) -> Answer:
        """Answer one Tablestore request and record it."""
        request_id = new_request_id()
        op, action = route(request)
        table = table_of(op, request.body)
        claimed = claimed_access_key_id(request)
        auth: Authenticated | None = None
        try:
            faulted = self._front_end(op, RequestRecord(op, table, 0, "Dropped", request_id, claimed))
            if faulted is not None:  # before headers, signatures or tables are looked at
                return faulted
            if request.method != "POST":
                raise OtsError("OTSMethodNotAllowed")
            keys = self._key_ring()
            auth = verify(request, self.instance, keys, self._clock())
            if op == UNSUPPORTED:
                raise invalid(f"Unsupported operation: {action}.")
            if op in NOT_SERVED:
                raise OtsError("OTSNotImplemented")
            body = self._serve(op, request.body)
            answer = self._answer(200, request_id, request.raw_path, body, auth)
            code = ""
        except OtsError as error:
            answer = self._answer(error.status, request_id, request.raw_path, error_body(error), auth)
            code = error.code
        except Exception as exc:  # noqa: BLE001 - a bug of the stand-in's: answer as Tablestore would, keep the type
            with self._lock:
                self.internal_errors.append(f"{op}: {type(exc).__name__}")
            failure = OtsError("OTSInternalServerError")
            answer = self._answer(failure.status, request_id, request.raw_path, error_body(failure), auth)
            code = failure.code
        self._record(RequestRecord(op, table, answer.status, code, request_id, claimed))
        return answer

    def _answer(self, status: int, request_id: str, path: str, body: bytes, auth: Authenticated | None) -> Answer:
        return Answer(status, answer_headers(body, request_id, self._clock(), path, auth), body)

    def _serve(self, op: str, body: bytes) -> bytes:
        if op == "CreateTable":
            spec = parse_create_table(body)
            with self._lock:
                if spec.name in self._tables:
                    raise OtsError("OTSObjectAlreadyExist")
                self._tables[spec.name] = _Table(spec, self._clock())
            return b""
        if op == "ListTable":
            with self._lock:
                return list_table_response(sorted(self._tables))
        if op == "DescribeTable":
            name = parse_table_name(body)
            with self._lock:
                found = self._table(name)
                return describe_table_response(found.spec, found.created)
        if op == "DeleteTable":
            name = parse_table_name(body)
            with self._lock:
                self._table(name)
                del self._tables[name]
            return b""
        if op == "GetRow":
            return self._get_row(parse_get_row(body))
        return self._write(parse_write(op, body))

    def _get_row(self, request: GetRow) -> bytes:
        if request.transaction_id is not None:
            raise invalid("TransactionID is invalid.")
        if request.max_versions is None and request.time_range is None:
            raise invalid("No version condition is specified while querying row.")
        if request.max_versions is not None and request.max_versions <= 0:
            raise invalid(f"Invalid max versions: {request.max_versions} . Reason: Max versions must be positive.")
        with self._lock:
            found = self._table(request.table)
            key = check_primary_key(found.spec, request.primary_key)
            stored = found.rows.get(key)
            cells = {} if stored is None else dict(stored)
        if stored is None:
            return get_row_response(1, b"")
        if request.column_filter is not None and not evaluate(
            request.column_filter, {name: cell.value for name, cell in cells.items()}
        ):
            return get_row_response(1, b"")
        if request.time_range is not None:
            start, end, specific = request.time_range
            cells = {
                name: cell
                for name, cell in cells.items()
                if (specific is None or cell.timestamp == specific)
                and (start is None or cell.timestamp >= start)
                and (end is None or cell.timestamp < end)
            }
        wanted = request.columns_to_get
        if wanted:
            cells = {name: cell for name, cell in cells.items() if name in wanted}
            key_wanted = any(name in wanted for name, _ in found.spec.primary_key)
            if not cells and not key_wanted:
                return get_row_response(1, b"")  # the row has none of the columns asked for
        columns = [(name, cell.value, cell.timestamp) for name, cell in sorted(cells.items())]
        return get_row_response(1, encode_row(request.primary_key, columns))

    def _write(self, request: WriteRow) -> bytes:
        if request.transaction_id is not None:
            raise invalid("TransactionID is invalid.")
        _check_change(request)
        with self._lock:
            found = self._table(request.table)
            key = check_primary_key(found.spec, request.row.primary_key)
            for name in (cell.name for cell in request.row.cells):
                if any(name == pk for pk, _ in found.spec.primary_key):
                    raise invalid(f"Duplicated attribute column name with primary key column:{name}.")
            stored = found.rows.get(key)
            current = None if stored is None else {name: cell.value for name, cell in stored.items()}
            if not condition_holds(request.condition, current):
                raise OtsError("OTSConditionCheckFail")  # the row is not returned, as on Tablestore
            now_ms = int(self._clock() * 1000)
            after = self._apply(request, stored, now_ms)
            if after is None:
                found.rows.pop(key, None)
            else:
                found.rows[key] = after
        returned = None
        if request.return_type == RT_PK:
            returned = encode_row(request.row.primary_key)
        elif request.return_type == RT_AFTER_MODIFY:
            cells = after or {}
            kept = [
                (name, cells[name].value, cells[name].timestamp) for name in request.return_columns if name in cells
            ]
            returned = encode_row(request.row.primary_key, kept)
        return write_response(1 if request.condition.reads else 0, 1, returned)

    @staticmethod
    def _apply(request: WriteRow, stored: dict[str, _Cell] | None, now_ms: int) -> dict[str, _Cell] | None:
        """The row's cells after the change (None: no row). Called with the lock held."""
        if request.operation == "DeleteRow":
            return None
        if request.operation == "PutRow":
            return {cell.name: _Cell(_value(cell.value), cell.timestamp or now_ms) for cell in request.row.cells}
        after = dict(stored or {})
        for cell in request.row.cells:
            if cell.op is None:
                after[cell.name] = _Cell(_value(cell.value), cell.timestamp or now_ms)
            elif cell.op == DELETE_ALL_VERSION:
                after.pop(cell.name, None)
            elif cell.op == DELETE_ONE_VERSION:
                if cell.name in after and after[cell.name].timestamp == cell.timestamp:
                    del after[cell.name]
            else:  # INCREMENT
                old = after.get(cell.name)
                if old is not None and value_type(old.value) != "INTEGER":
                    raise invalid(f"Invalid column type for increment: {cell.name}.")  # chosen wording
                total = (0 if old is None else int(old.value)) + int(_value(cell.value))
                if not -(1 << 63) <= total < 1 << 63:
                    raise invalid(f"Increment overflows INTEGER: {cell.name}.")  # chosen wording
                after[cell.name] = _Cell(total, now_ms)
        if stored is None and not after:
            return None  # only deletes on a row that is not there: still no row (chosen)
        return after

    def _table(self, name: str) -> _Table:
        if name not in self._tables:
            raise OtsError("OTSObjectNotExist")
        return self._tables[name]

    def body_refusal(self, too_large: bool, target: str) -> Answer:
        error = OtsError("OTSRequestBodyTooLarge") if too_large else invalid("Bad Content-Length or chunk size.")
        body = error_body(error)
        return Answer(error.status, answer_headers(body, new_request_id(), self._clock(), target, None), body)

    # --- the control plane: tables besides faults and requests -----------------------------------------------

    def _control(self, method: str, route: str, request: dict[str, Any]) -> Any:
        """GET/POST tables, GET tables/<name>, POST tables/<name>/rows."""
        parts = route.split("/")
        if (method, route) == ("GET", "tables"):
            with self._lock:
                return {"tables": sorted(self._tables)}
        if (method, route) == ("POST", "tables"):
            self.create_table(str(request["name"]), str(request.get("primary_key", "pk")))
            return {"name": request["name"]}
        if method == "GET" and len(parts) == 2 and parts[0] == "tables":
            return self._table_view(parts[1])
        if method == "POST" and len(parts) == 3 and parts[0] == "tables" and parts[2] == "rows":
            key = request["primary_key"]
            columns = request.get("columns", {})
            if not isinstance(columns, dict):
                raise TypeError("columns must be a JSON object")
            self.put_row(parts[1], tuple(key) if isinstance(key, list) else key, columns)
            return {"table": parts[1]}
        return None

    def _table_view(self, name: str) -> dict[str, Any]:
        rows = self.rows(name)
        with self._lock:
            spec = self._tables[name].spec
        return {
            "name": name,
            "primary_key": [list(column) for column in spec.primary_key],
            "rows": [
                {
                    "primary_key": _jsonable(key),
                    "columns": {column: _jsonable(value) for column, value in columns.items()},
                }
                for key, columns in rows.items()
            ],
        }


def _value(value: Value | None) -> Value:
    if value is None:  # _check_change refuses this first
        raise invalid("Invalid cell: missing value.")
    return value


def _check_value(value: object) -> None:
    """A value the local API may store: what PlainBuffer can carry (TypeError/ValueError otherwise)."""
    if not isinstance(value, bool | int | float | str | bytes):
        raise TypeError(f"a column value is str, int, float, bool or bytes, not {type(value).__name__}")
    if isinstance(value, int) and not isinstance(value, bool) and not -(1 << 63) <= value < 1 << 63:
        raise ValueError("an INTEGER is a signed 64-bit integer")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN can't be set to double value.")


def _check_change(request: WriteRow) -> None:
    """The rules of Tablestore's row-operation errors that do not depend on the table."""
    row, op = request.row, request.operation
    if op == "DeleteRow":
        if not row.delete_marker:
            raise invalid("Invalid request of delete row: missing RowDeleteMarker in request.")
        if row.cells:
            raise invalid("Invalid delete row request: unexpected cells in request.")
        return
    if row.delete_marker:
        raise invalid("Invalid request of put/update row: unexpected RowDeleteMarker in request.")
    if op == "UpdateRow" and not row.cells:
        raise invalid("Invalid update row request: missing cells in request.")
    for cell in row.cells:
        check_column_name(cell.name)
        if op == "PutRow":
            if cell.op is not None:
                raise invalid(f"OpType cannot be given for column name:{cell.name} in PutRow.")
            if cell.value is None:
                raise invalid("Invalid request of put row: find cells without values.")
        elif cell.op is None:
            if cell.value is None:
                raise invalid(f"Invalid cell: {cell.name}. Reason: missing value.")
        elif cell.op in (DELETE_ALL_VERSION, DELETE_ONE_VERSION):
            if cell.value is not None:
                raise invalid("Column value cannot be given when type is DELETE_ONE_VERSION,DELETE_ALL_VERSION.")
            if cell.op == DELETE_ALL_VERSION and cell.timestamp is not None:
                raise invalid("Timestamp cannot be given when type is DELETE_ALL_VERSION.")
            if cell.op == DELETE_ONE_VERSION and cell.timestamp is None:
                raise invalid("Timestamp must be given when type is DELETE_ONE_VERSION.")
        elif cell.op == INCREMENT:
            if cell.value is None or value_type(cell.value) != "INTEGER":
                raise invalid(f"Invalid cell: {cell.name}. Reason: missing value.")
        else:
            raise invalid(f"Invalid op type of cell: {cell.op}.")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, bytes):
        return {"binary": base64.b64encode(value).decode()}
    return value


def main(argv: list[str] | None = None) -> None:
    """CLI: serve until Ctrl-C, printing what a client needs (never the secret itself)."""
    parser = cli_parser("waba_local.stand_ins.tablestore_stand_in", __doc__, 9200)
    parser.add_argument("--instance", default=INSTANCE, help=f"instance name (default {INSTANCE})")
    parser.add_argument(
        "--table", action="extend", nargs="+", default=[], help="tables to create (repeatable; letters, digits, _)"
    )
    parser.add_argument("--primary-key", default="pk", help="the STRING primary key column of those tables")
    args = parser.parse_args(argv)
    stand_in = TablestoreStandIn(instance=args.instance, host=args.host, port=args.port)
    try:
        for name in args.table:
            stand_in.create_table(name, args.primary_key)
    except OtsError as error:
        parser.error(error.message)
    with stand_in:
        lines = [
            f"Tablestore stand-in listening on {stand_in.endpoint} (instance {stand_in.instance})",
            f"TABLESTORE_ENDPOINT={stand_in.endpoint}",
            f"TABLESTORE_INSTANCE={stand_in.instance}",
            f"ALIBABA_CLOUD_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY_ID}",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET: waba_local.stand_ins.tablestore_stand_in.DEFAULT_ACCESS_KEY_SECRET",
            f"tables: {', '.join(args.table) or '(none)'}",
            *stand_in.control_lines({"kind": "fail", "times": 1, "code": "OTSServerBusy"}, "tables/<table>"),
        ]
        serve_until_interrupted(lines)


if __name__ == "__main__":
    main()
