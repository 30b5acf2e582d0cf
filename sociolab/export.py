"""`sociolab export --format parquet|csv|jsonl`: the store's tables and views as files, with a manifest.

Every file is written by DuckDB's own `COPY ... TO`, so types survive as DuckDB knows them
(Parquet keeps INTEGER, BIGINT, DOUBLE, BOOLEAN, TIMESTAMP; JSON Lines keeps JSON columns as
nested objects). JSON columns go into Parquet and CSV as JSON text: DuckDB's Parquet JSON type is
an Arrow extension that polars reads as raw bytes, and text is what every reader understands.

The source database is opened read-only and never migrated (a file of an older schema is exported
as it is; the manifest says which schema). The target folder must be new or empty unless
`overwrite` is given; then only the files this export writes are replaced (removed first, so a
symbolic link in the folder is replaced, not written through). `manifest.json` (for programs) and
`README.md` (for people) describe what was written: every file, its rows, its columns and their
store types, the sociolab and schema versions, the source file, and the credit of imported data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import duckdb

from sociolab.analysis.credits import imported_notes
from sociolab.base.errors import UserError, first_line
from sociolab.base.userfiles import regular_file
from sociolab.orchestrator.store import SCHEMA_VERSION, Store

# format -> (file suffix, COPY options)
TABLE_FORMATS = {
    "parquet": ("parquet", "FORMAT parquet, COMPRESSION zstd"),
    "csv": ("csv", "FORMAT csv, HEADER true"),
    "jsonl": ("jsonl", "FORMAT json"),
}
MANIFEST_FILES = ("manifest.json", "README.md")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the store's DuckDB type


@dataclass(frozen=True)
class Relation:
    """A table or view of the store, as information_schema describes it."""

    name: str
    kind: str  # "table" or "view"
    columns: tuple[Column, ...]

    @property
    def json_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.type == "JSON"]


@dataclass
class ExportedFile:
    name: str
    kind: str
    file: str
    rows: int
    columns: list[Column]


@dataclass
class Manifest:
    """What an export wrote; `manifest.json` is this, as JSON."""

    format: str
    source_db: str
    sociolab_version: str
    schema_version: int
    exported_at: str
    credits: list[str]
    files: list[ExportedFile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_source(db: str | Path) -> Store:
    """The store opened read-only and never migrated: export must not change its input. A missing
    file, another program's file and a newer sociolab's file are one line each."""
    path = regular_file(db, "database file")
    if not is_duckdb_file(path):
        raise UserError("not a DuckDB database file; check --db", file=path)
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise UserError(f"cannot open the database read-only: {first_line(exc)}", file=path) from None
    store = Store(con, str(path))
    try:
        version = store.schema_version()
        if version == 0:
            raise UserError("not a sociolab database (no schema_version table); check --db", file=path)
        store.refuse_newer_or_foreign(version)
    except BaseException:
        store.close()
        raise
    return store.with_shards()  # its Parquet shards, if any, as part of its tables (docs/scale.md)


def is_duckdb_file(path: Path) -> bool:
    """DuckDB files carry the magic bytes `DUCK` at offset 8 of their first block."""
    with path.open("rb") as fh:
        return fh.read(12)[8:12] == b"DUCK"


def relations(con: duckdb.DuckDBPyConnection) -> list[Relation]:
    """The store's tables, then its views, each with its columns in order."""
    rows = con.execute("""
        SELECT t.table_name, t.table_type, c.column_name, c.data_type
          FROM information_schema.tables t
          JOIN information_schema.columns c USING (table_catalog, table_schema, table_name)
         WHERE t.table_schema = 'main' AND t.table_catalog = current_database()
         ORDER BY t.table_type, t.table_name, c.ordinal_position""").fetchall()
    found: dict[str, Relation] = {}
    for name, table_type, column, data_type in rows:
        kind = "view" if table_type == "VIEW" else "table"
        known = found.get(name) or Relation(name, kind, ())
        found[name] = Relation(name, kind, known.columns + (Column(column, data_type),))
    return list(found.values())


def chosen(available: list[Relation], names: Sequence[str] | None) -> list[Relation]:
    """The relations named (all when None); an unknown name is one line listing the known ones."""
    if names is None:
        return available
    by_name = {r.name: r for r in available}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UserError(f"no table or view named {', '.join(repr(n) for n in unknown)} in the store; "
                        f"it has: {', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(names)]


def target_folder(to: str | Path, overwrite: bool) -> Path:
    """Check the output folder before anything is read or written: it is created by the export
    (its parent must exist: nothing is made outside it), or exists and is empty, or `overwrite`."""
    folder = Path(to)
    if not str(to):
        raise UserError("the --to folder name is empty; give a folder to write, e.g. --to export/")
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir():
            raise UserError(f"cannot write into {folder}: it is a file; give a folder (new or empty)")
        if any(folder.iterdir()) and not overwrite:
            raise UserError(f"{folder} is not empty; give a new or empty folder, or --overwrite to replace "
                            "the files this export writes")
    elif not folder.parent.is_dir():
        raise UserError(f"cannot create {folder}: its parent folder {folder.parent} does not exist")
    return folder


def check_format(fmt: str, formats: Sequence[str]) -> str:
    if fmt not in formats:
        raise UserError(f"unknown --format '{fmt}': use {', '.join(formats[:-1])} or {formats[-1]}")
    return fmt


def fresh_file(folder: Path, name: str, source: Path) -> Path:
    """A path in `folder` to (re)write: an old file there is removed first, and the store itself is
    never a target."""
    path = folder / name
    if path.resolve() == source.resolve():
        raise UserError(f"{path} is the database being exported; export to another folder")
    if path.is_symlink() or path.exists():
        path.unlink()
    return path


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def copy_relation(con: duckdb.DuckDBPyConnection, relation: Relation, fmt: str, path: Path) -> int:
    """COPY one table or view to `path`; JSON columns become JSON text except in JSON Lines.
    Returns the rows written, as COPY counts them."""
    as_text = relation.json_columns if fmt != "jsonl" else []
    select = "SELECT * REPLACE ({})".format(", ".join(f'"{c}"::VARCHAR AS "{c}"' for c in as_text)) \
        if as_text else "SELECT *"
    options = TABLE_FORMATS[fmt][1]
    result = con.execute(f'COPY ({select} FROM "{relation.name}") TO {sql_string(str(path))} ({options})')
    written = result.fetchone()
    return int(written[0]) if written else 0


def export_tables(db: str | Path, to: str | Path, fmt: str, tables: Sequence[str] | None = None,
                  overwrite: bool = False) -> Manifest:
    """Write each chosen table and view of `db` to `to` as `<name>.<fmt>`, then the manifest."""
    from sociolab import __version__

    check_format(fmt, list(TABLE_FORMATS))
    folder = target_folder(to, overwrite)
    with open_source(db) as store:
        todo = chosen(relations(store.con), tables)
        manifest = Manifest(format=fmt, source_db=str(Path(db).resolve()), sociolab_version=__version__,
                            schema_version=store.schema_version(),
                            exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            credits=imported_notes(store.con))
        folder.mkdir(exist_ok=True)
        for relation in todo:
            name = f"{relation.name}.{TABLE_FORMATS[fmt][0]}"
            rows = copy_relation(store.con, relation, fmt, fresh_file(folder, name, Path(db)))
            manifest.files.append(ExportedFile(relation.name, relation.kind, name, rows, list(relation.columns)))
    write_manifest(folder, manifest, Path(db))
    return manifest


def write_manifest(folder: Path, manifest: Manifest, source: Path) -> None:
    """manifest.json and README.md, from the same facts."""
    fresh_file(folder, "manifest.json", source).write_text(
        json.dumps(manifest.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    fresh_file(folder, "README.md", source).write_text(readme_text(manifest), encoding="utf-8")


def readme_text(manifest: Manifest) -> str:
    """The manifest for people: where the data come from, whom to credit, what each file holds."""
    lines = [f"# sociolab export ({manifest.format})", "",
             f"- source: `{manifest.source_db}` (store schema v{manifest.schema_version}"
             + ("" if manifest.schema_version == SCHEMA_VERSION else
                f"; this sociolab writes v{SCHEMA_VERSION}, see docs/schema.md") + ")",
             f"- written by sociolab {manifest.sociolab_version} at {manifest.exported_at}",
             "- column types are the store's DuckDB types (docs/schema.md explains every column)"
             + ("; JSON columns hold JSON text" if manifest.format != "jsonl" else ""), ""]
    if manifest.credits:
        lines += ["## Credit and licence", "", *[f"- {c}" for c in manifest.credits], ""]
    lines += ["## Files", "", "| file | kind | rows | columns |", "|---|---|---|---|"]
    for f in manifest.files:
        columns = ", ".join(f"{c.name} {c.type}" for c in f.columns)
        lines.append(f"| {f.file} | {f.kind} | {f.rows} | {columns} |")
    return "\n".join(lines) + "\n"

