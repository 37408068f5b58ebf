//! Nodes of two versions never share a store: a serving node that finds the store migrated
//! past the schema it knows (by a newer node started beside it) stops, rather than go on
//! writing rows whose meaning has changed under it. At start the store's opening refuses such
//! a store already; this is the same rule for a node that was running when it happened.

use std::time::Duration;

use crate::store::SCHEMA_VERSION;

use super::Authority;

/// The store's schema is newer than this program's: another node migrated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the store was migrated to schema {found} by a newer sigil while this node (schema {known}) was serving; this node stops: upgrade it before starting it again"
)]
pub struct StoreOutgrown {
    /// The version the store is at now.
    pub found: i64,
    /// The version this program knows.
    pub known: i64,
}

/// Whether a store at schema `found` can still be served by this program.
pub fn check(found: i64) -> Result<(), StoreOutgrown> {
    if found > SCHEMA_VERSION {
        Err(StoreOutgrown {
            found,
            known: SCHEMA_VERSION,
        })
    } else {
        Ok(())
    }
}

impl Authority {
    /// Read the store's schema version every `every` and return when it is newer than this
    /// program's (the caller stops the node). A read that fails is logged and retried at the
    /// next round: an unreachable store is the readiness check's business, not a reason to stop.
    pub async fn watching_schema(self, every: Duration) -> StoreOutgrown {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.inner.store.schema_version().await {
                Ok(found) => {
                    if let Err(outgrown) = check(found) {
                        tracing::error!(
                            found = outgrown.found,
                            known = outgrown.known,
                            "{outgrown}"
                        );
                        return outgrown;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "schema check: cannot read the store"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_newer_schema_stops_the_node() {
        assert_eq!(check(SCHEMA_VERSION), Ok(()));
        assert_eq!(check(SCHEMA_VERSION - 1), Ok(()));
        let e = check(SCHEMA_VERSION + 1).unwrap_err();
        assert_eq!(e.found, SCHEMA_VERSION + 1);
        assert_eq!(e.known, SCHEMA_VERSION);
        assert!(e.to_string().contains("upgrade it"), "{e}");
    }
}
