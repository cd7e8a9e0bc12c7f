//! PostgreSQL: a large batch's rows sent by several statements, each
//! carrying at most about 12 KiB of values: the claims of a batch that
//! reads its wallets (here), and the writes of every batch (see `pg`).
//!
//! sqlx does not turn off Nagle's algorithm on its connections, and over
//! TLS it writes a message one TLS record (16 KiB at most) at a time. A
//! message of two records or more then waits, before its last record is
//! sent, for the server to acknowledge the first, which PostgreSQL, still
//! waiting for the rest of the message, delays by 40 ms (TCP's delayed
//! acknowledgement). A batch whose statement is that large (from about 30
//! journal entries) stalls for 40 ms: at concurrency 128, where batches
//! carry 65 operations, that halved the ledger's throughput over TLS
//! (2,099 pairs/s, against 4,447 without TLS; see the README's
//! benchmarks). Kept under one record, each statement goes at once.
//! SQLite's connection is no socket: its rows are never split.

use sea_orm::DbBackend;

use super::sets::HoldClaim;

/// Bytes of values a statement sends at most, as estimated by
/// `HoldClaim::bytes` (and by `pg`, its JSON): under one TLS record with room for the message's
/// framing and what the estimate leaves out.
pub(crate) const MAX_VALUE_BYTES: usize = 12 * 1024;

/// `rows` in consecutive chunks, each (but a row larger than the limit by
/// itself) of at most [`MAX_VALUE_BYTES`] as `bytes` estimates each row;
/// all of them in one chunk on SQLite, none when there are none.
pub(crate) fn chunked<T>(backend: DbBackend, rows: &[T], bytes: impl Fn(&T) -> usize) -> Vec<&[T]> {
    if rows.is_empty() {
        return Vec::new();
    }
    if backend != DbBackend::Postgres {
        return vec![rows];
    }
    let mut chunks = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let b = bytes(row);
        if i > start && size + b > MAX_VALUE_BYTES {
            chunks.push(&rows[start..i]);
            (start, size) = (i, 0);
        }
        size += b;
    }
    chunks.push(&rows[start..]);
    chunks
}

fn text_bytes(text: &str) -> usize {
    4 + text.len()
}

impl HoldClaim {
    /// What its claim sends, about: each text's length and bytes, 12 for
    /// each other value.
    pub(crate) fn bytes(&self) -> usize {
        text_bytes(&self.id)
            + text_bytes(&self.user_id)
            + text_bytes(self.status.as_str())
            + self.result.as_deref().map_or(4, text_bytes)
            + 2 * 12
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_rows_go_in_chunks_under_the_limit_in_their_order() {
        let rows: Vec<usize> = (0..100).map(|i| if i == 50 { 20_000 } else { 1_000 }).collect();
        let chunks = chunked(DbBackend::Postgres, &rows, |&b| b);
        assert_eq!(chunks.concat(), rows, "every row once, in order");
        for chunk in &chunks {
            let size: usize = chunk.iter().sum();
            assert!(
                size <= MAX_VALUE_BYTES || chunk.len() == 1,
                "{size} bytes in {} rows",
                chunk.len()
            );
        }
        assert!(chunks.iter().any(|c| c == &[20_000]), "a row over the limit goes alone");
        assert_eq!(chunks.len(), 11);
    }

    #[test]
    fn sqlite_rows_go_together_and_no_rows_make_no_chunk() {
        let rows = vec![20_000_usize; 10];
        assert_eq!(chunked(DbBackend::Sqlite, &rows, |&b| b), vec![&rows[..]]);
        assert!(chunked(DbBackend::Postgres, &[] as &[usize], |&b| b).is_empty());
    }
}
