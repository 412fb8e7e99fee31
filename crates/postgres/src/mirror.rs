//! Postgres' side of applying events that only update the Stripe mirror: one statement
//! per batch, not two per event. The objects (one per key: `mirror::winners`) are
//! upserted under the ordering rule, and every event is marked processed (`applied`
//! when its object was written, else `stale_transition`), as arrays bound to a fixed
//! text, like the worker's batch commit (`commit`).

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use payhook_domain::ports::StoreError;
use payhook_domain::{InboxId, MirrorOutcome, MirrorWrite};
use payhook_sql_shared::types::{DbInstant, Instant};
use std::collections::HashSet;

/// The mirror's ordering rule as an upsert's conflict clause, for a target aliased `s`:
/// a stored object is replaced only by a later `source_event_created`, or the same
/// second and a later `status_rank`. Both of Postgres' mirror writes end with it (this
/// batch, and the worker's batch commit in `commit`).
macro_rules! newer_wins {
    () => {
        "
    ON CONFLICT (account, object_type, object_id) DO UPDATE SET data = EXCLUDED.data,
        livemode = EXCLUDED.livemode, deleted = EXCLUDED.deleted, customer = EXCLUDED.customer,
        status_rank = EXCLUDED.status_rank, source_event_id = EXCLUDED.source_event_id,
        source_event_created = EXCLUDED.source_event_created, updated_at = EXCLUDED.updated_at
    WHERE (s.source_event_created, s.status_rank) < (EXCLUDED.source_event_created, EXCLUDED.status_rank)"
    };
}
pub(crate) use newer_wins;

const APPLY: &str = concat!(
    "WITH m AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::bool[], $7::text[],
        $8::int[], $9::text[], $10::bigint[])
        AS m(account, object_type, object_id, data, livemode, deleted, customer, status_rank, source_event_id,
            source_event_created)
), written AS (
    INSERT INTO stripe_objects AS s (account, object_type, object_id, data, livemode, deleted, customer,
        status_rank, source_event_id, source_event_created, updated_at)
    SELECT account, object_type, object_id, data, livemode, deleted, customer, status_rank, source_event_id,
        source_event_created, $11 FROM m",
    newer_wins!(),
    "
    RETURNING s.source_event_id
), processed AS (
    UPDATE webhook_events AS e SET status = 'processed', processed_at = $11, locked_until = NULL,
        last_error = NULL,
        result = CASE WHEN i.event IN (SELECT source_event_id FROM written) THEN 'applied'
                      ELSE 'stale_transition' END
    FROM unnest($12::bigint[], $13::text[]) AS i(inbox, event)
    WHERE e.id = i.inbox
)
SELECT source_event_id FROM written"
);

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = Text)]
    source_event_id: String,
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Text)]
    source_event_id: String,
    #[diesel(sql_type = BigInt)]
    source_event_created: i64,
    #[diesel(sql_type = Integer)]
    status_rank: i32,
}

pub async fn apply_mirror_events(
    conn: &mut AsyncPgConnection,
    events: &[(InboxId, MirrorWrite)],
    at: DateTime<Utc>,
) -> Result<Vec<MirrorOutcome>, StoreError> {
    let db = payhook_sql_shared::db_error;
    let all: Vec<&MirrorWrite> = events.iter().map(|(_, w)| w).collect();
    let chosen: Vec<&MirrorWrite> = payhook_sql_shared::mirror::winners(&all)
        .into_iter()
        .map(|i| all[i])
        .collect();
    let column = |f: fn(&MirrorWrite) -> String| chosen.iter().map(|w| f(w)).collect::<Vec<String>>();
    let written: Vec<Written> = diesel::sql_query(APPLY)
        .bind::<Array<Text>, _>(column(|w| w.account.clone()))
        .bind::<Array<Text>, _>(column(|w| w.object_type.as_str().to_owned()))
        .bind::<Array<Text>, _>(column(|w| w.object_id.clone()))
        .bind::<Array<Text>, _>(column(|w| w.data.clone()))
        .bind::<Array<Bool>, _>(chosen.iter().map(|w| w.livemode).collect::<Vec<_>>())
        .bind::<Array<Bool>, _>(chosen.iter().map(|w| w.deleted).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(chosen.iter().map(|w| w.customer.clone()).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(chosen.iter().map(|w| w.status_rank).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(column(|w| w.source_event_id.clone()))
        .bind::<Array<BigInt>, _>(chosen.iter().map(|w| w.source_event_created).collect::<Vec<_>>())
        .bind::<Instant, _>(DbInstant(at))
        .bind::<Array<BigInt>, _>(events.iter().map(|(inbox, _)| inbox.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(all.iter().map(|w| w.source_event_id.clone()).collect::<Vec<_>>())
        .load(conn)
        .await
        .map_err(db)?;
    let written: HashSet<String> = written.into_iter().map(|w| w.source_event_id).collect();
    let mut outcomes = Vec::with_capacity(events.len());
    for write in all {
        if written.contains(&write.source_event_id) {
            outcomes.push(MirrorOutcome::Written);
            continue;
        }
        // Not written: say why, from what is stored now (rare: older events, ties,
        // replays).
        let stored: Vec<Stored> = diesel::sql_query(
            "SELECT source_event_id, source_event_created, status_rank FROM stripe_objects
             WHERE account = $1 AND object_type = $2 AND object_id = $3",
        )
        .bind::<Text, _>(&write.account)
        .bind::<Text, _>(write.object_type.as_str())
        .bind::<Text, _>(&write.object_id)
        .load(conn)
        .await
        .map_err(db)?;
        outcomes.push(match stored.as_slice().first() {
            Some(s) => write.against(&s.source_event_id, s.source_event_created, s.status_rank),
            None => MirrorOutcome::Older,
        });
    }
    Ok(outcomes)
}
