//! SQL types that exist in both backends under different names, and the Rust values
//! they carry. Postgres gets its native types (`uuid`, `jsonb`, `timestamptz`,
//! `bytea`); SQLite, which has none of them, gets text and blobs in fixed formats.

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types as native;
use diesel::sqlite::Sqlite;
use std::io::Write;

/// `uuid` in Postgres; hyphenated lower-case text in SQLite.
#[derive(Debug, Clone, Copy, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 2950, array_oid = 2951))]
#[diesel(sqlite_type(name = "Text"))]
pub struct Uuid;

/// `jsonb` in Postgres; JSON text in SQLite.
#[derive(Debug, Clone, Copy, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 3802, array_oid = 3807))]
#[diesel(sqlite_type(name = "Text"))]
pub struct Json;

/// `timestamptz` in Postgres; in SQLite fixed-width RFC 3339 UTC text with
/// microseconds (`2026-11-22T14:00:00.000000Z`), so text order is time order.
#[derive(Debug, Clone, Copy, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
#[diesel(sqlite_type(name = "Text"))]
pub struct Instant;

/// `bytea` in Postgres; a blob in SQLite.
#[derive(Debug, Clone, Copy, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 17, array_oid = 1001))]
#[diesel(sqlite_type(name = "Binary"))]
pub struct Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Uuid)]
pub struct DbUuid(pub uuid::Uuid);

#[derive(Debug, Clone, PartialEq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Json)]
pub struct DbJson(pub serde_json::Value);

/// JSON to write, already serialized: a value serialized straight to text costs less
/// than building a `serde_json::Value` of it first (the inbox payload and the forensic
/// headers of every webhook).
#[derive(Debug, Clone, PartialEq, Eq, AsExpression)]
#[diesel(sql_type = Json)]
pub struct DbJsonText(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = Instant)]
pub struct DbInstant(pub DateTime<Utc>);

#[derive(Debug, Clone, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Bytes)]
pub struct DbBytes(pub Vec<u8>);

/// Borrowed bytes to write (a raw webhook body), so inserting needs no copy.
#[derive(Debug, Clone, Copy, AsExpression)]
#[diesel(sql_type = Bytes)]
pub struct DbBytesRef<'a>(pub &'a [u8]);

const SQLITE_INSTANT_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

fn sqlite_text(value: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<String> {
    <String as FromSql<native::Text, Sqlite>>::from_sql(value)
}

// Postgres: delegate to diesel's own impls for the native types.

impl FromSql<Uuid, Pg> for DbUuid {
    fn from_sql(bytes: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        <uuid::Uuid as FromSql<native::Uuid, Pg>>::from_sql(bytes).map(Self)
    }
}
impl ToSql<Uuid, Pg> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <uuid::Uuid as ToSql<native::Uuid, Pg>>::to_sql(&self.0, out)
    }
}
impl FromSql<Json, Pg> for DbJson {
    fn from_sql(bytes: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        <serde_json::Value as FromSql<native::Jsonb, Pg>>::from_sql(bytes).map(Self)
    }
}
impl ToSql<Json, Pg> for DbJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <serde_json::Value as ToSql<native::Jsonb, Pg>>::to_sql(&self.0, out)
    }
}
impl ToSql<Json, Pg> for DbJsonText {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        // jsonb's binary format: its version (1), then the JSON text.
        out.write_all(&[1])?;
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}
impl FromSql<Instant, Pg> for DbInstant {
    fn from_sql(bytes: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<native::Timestamptz, Pg>>::from_sql(bytes).map(Self)
    }
}
impl ToSql<Instant, Pg> for DbInstant {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<native::Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}
impl FromSql<Bytes, Pg> for DbBytes {
    fn from_sql(bytes: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        <Vec<u8> as FromSql<native::Bytea, Pg>>::from_sql(bytes).map(Self)
    }
}
impl ToSql<Bytes, Pg> for DbBytes {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <Vec<u8> as ToSql<native::Bytea, Pg>>::to_sql(&self.0, out)
    }
}

impl ToSql<Bytes, Pg> for DbBytesRef<'_> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <[u8] as ToSql<native::Bytea, Pg>>::to_sql(self.0, out)
    }
}

// SQLite: text and blobs in the formats documented on each type.

impl FromSql<Uuid, Sqlite> for DbUuid {
    fn from_sql(value: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        Ok(Self(uuid::Uuid::parse_str(&sqlite_text(value)?)?))
    }
}
impl ToSql<Uuid, Sqlite> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.hyphenated().to_string());
        Ok(IsNull::No)
    }
}
impl FromSql<Json, Sqlite> for DbJson {
    fn from_sql(value: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        Ok(Self(serde_json::from_str(&sqlite_text(value)?)?))
    }
}
impl ToSql<Json, Sqlite> for DbJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.to_string());
        Ok(IsNull::No)
    }
}
impl ToSql<Json, Sqlite> for DbJsonText {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.as_str());
        Ok(IsNull::No)
    }
}
impl FromSql<Instant, Sqlite> for DbInstant {
    fn from_sql(value: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        Ok(Self(
            DateTime::parse_from_rfc3339(&sqlite_text(value)?)?.with_timezone(&Utc),
        ))
    }
}
impl ToSql<Instant, Sqlite> for DbInstant {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.format(SQLITE_INSTANT_FORMAT).to_string());
        Ok(IsNull::No)
    }
}
impl FromSql<Bytes, Sqlite> for DbBytes {
    fn from_sql(value: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <Vec<u8> as FromSql<native::Binary, Sqlite>>::from_sql(value).map(Self)
    }
}
impl ToSql<Bytes, Sqlite> for DbBytes {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        <Vec<u8> as ToSql<native::Binary, Sqlite>>::to_sql(&self.0, out)
    }
}

impl ToSql<Bytes, Sqlite> for DbBytesRef<'_> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        <[u8] as ToSql<native::Binary, Sqlite>>::to_sql(self.0, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sqlite_instants_sort_as_text_in_time_order() {
        let fmt = |secs: i64, micros: u32| {
            Utc.timestamp_opt(secs, micros * 1000)
                .single()
                .unwrap()
                .format(SQLITE_INSTANT_FORMAT)
                .to_string()
        };
        let ordered = [
            fmt(1_700_000_000, 0),
            fmt(1_700_000_000, 5),
            fmt(1_700_000_000, 500_000),
            fmt(1_700_000_001, 0),
        ];
        assert!(ordered.windows(2).all(|w| w[0] < w[1]), "{ordered:?}");
        assert_eq!(ordered[1], "2023-11-14T22:13:20.000005Z");
        assert!(ordered.iter().all(|s| s.len() == ordered[0].len()), "fixed width");
    }
}
