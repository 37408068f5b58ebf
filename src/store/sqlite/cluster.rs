//! SQLite: leadership of background tasks and the liveness check.

use async_trait::async_trait;

use crate::store::{ClusterStore, StoreError};

use super::{err, SqliteStore};

#[async_trait]
impl ClusterStore for SqliteStore {
    async fn lead(&self, _task: &str) -> Result<bool, StoreError> {
        // The embedded database serves one node.
        Ok(true)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(err))
            .await
    }
    async fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .map_err(err)
        })
        .await
    }
}
