//! Snapshots in the `es_snapshots` table: the newest few per stream, replaced in one
//! transaction. Positions and fingerprints are `u64`s kept in `BIGINT` columns by their
//! bits (a value above `i64::MAX` reads as negative in SQL and comes back unchanged).

use crate::conn::Query;
use crate::error::PgError;
use crate::store::{PgStore, join_time, nonnegative, split_time, to_i64};
use es_core::snapshot::{SNAPSHOTS_KEPT, Snapshot, SnapshotStore};
use es_core::{Corruption, DataLocation, StoreError};

impl SnapshotStore for PgStore {
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let shared = &*self.shared;
        shared.options.limits.check_stream_id(&snapshot.stream_id)?;
        if shared.options.read_only {
            return Err(StoreError::ReadOnly(
                "the store was connected read-only".into(),
            ));
        }
        let out_of_range = |what, value: String, reason| -> StoreError {
            PgError::OutOfRange {
                what,
                value,
                reason,
            }
            .into()
        };
        let version = to_i64(snapshot.version).ok_or_else(|| {
            out_of_range(
                "snapshot version",
                snapshot.version.to_string(),
                "stream versions are stored as BIGINT",
            )
        })?;
        let (at, at_ns) = split_time(snapshot.last_event_at).ok_or_else(|| {
            out_of_range(
                "snapshot time",
                snapshot.last_event_at.to_string(),
                "PostgreSQL stores times from 4713 BC",
            )
        })?;
        let position = snapshot.position as i64;
        let fingerprint = snapshot.fingerprint as i64;
        let snapshot_version = i64::from(snapshot.snapshot_version);
        let kept = SNAPSHOTS_KEPT as i64;
        shared.with_conn("saving a snapshot", |sql, conn| {
            let save = conn.statement(sql, Query::SaveSnapshot)?;
            let trim = conn.statement(sql, Query::TrimSnapshots)?;
            let result = (|| {
                let mut tx = conn.client.transaction()?;
                tx.execute(
                    &save,
                    &[
                        &snapshot.stream_id,
                        &version,
                        &position,
                        &at,
                        &at_ns,
                        &snapshot_version,
                        &fingerprint,
                        &snapshot.state,
                    ],
                )?;
                tx.execute(&trim, &[&snapshot.stream_id, &kept])?;
                tx.commit()
            })();
            result.inspect_err(|e| conn.note(e))
        })
    }

    fn load_snapshot(
        &self,
        stream_id: &str,
        max_version: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        let shared = &*self.shared;
        shared.options.limits.check_stream_id(stream_id)?;
        let max = to_i64(max_version).unwrap_or(i64::MAX);
        let row = shared.with_conn("loading a snapshot", |sql, conn| {
            let load = conn.statement(sql, Query::LoadSnapshot)?;
            conn.client
                .query_opt(&load, &[&stream_id, &max])
                .inspect_err(|e| conn.note(e))
        })?;
        let Some(row) = row else { return Ok(None) };
        let bad = |e: &dyn std::fmt::Display| {
            StoreError::Corrupted(Corruption::new(
                DataLocation::Snapshot {
                    stream_id: stream_id.to_owned(),
                },
                format!("its row cannot be read: {e}"),
            ))
        };
        let version: i64 = row.try_get(0).map_err(|e| bad(&e))?;
        let position: i64 = row.try_get(1).map_err(|e| bad(&e))?;
        let at = row.try_get(2).map_err(|e| bad(&e))?;
        let at_ns: i16 = row.try_get(3).map_err(|e| bad(&e))?;
        let schema_version: i64 = row.try_get(4).map_err(|e| bad(&e))?;
        let fingerprint: i64 = row.try_get(5).map_err(|e| bad(&e))?;
        Ok(Some(Snapshot {
            stream_id: stream_id.to_owned(),
            version: nonnegative(version, "snapshot version")?,
            position: position as u64,
            last_event_at: join_time(at, at_ns).ok_or_else(|| bad(&"invalid time"))?,
            snapshot_version: u32::try_from(schema_version).map_err(|e| bad(&e))?,
            fingerprint: fingerprint as u64,
            state: row.try_get(6).map_err(|e| bad(&e))?,
        }))
    }
}
