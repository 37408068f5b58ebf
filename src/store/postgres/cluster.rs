//! PostgreSQL: leadership of background tasks and the liveness check.

use std::time::Duration;

use async_trait::async_trait;

use crate::store::{ClusterStore, StoreError};

use super::{err, pool_err, task_key, PostgresStore};

#[async_trait]
impl ClusterStore for PostgresStore {
    async fn lead(&self, task: &str) -> Result<bool, StoreError> {
        let mut leases = self.leases.lock().await;
        if let Some(client) = leases.get(task) {
            let alive =
                tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1"))
                    .await
                    .is_ok_and(|r| r.is_ok());
            if alive {
                return Ok(true);
            }
            // The connection (and with it the lock) is gone: compete again.
            leases.remove(task);
        }
        // A connection of its own, outside the pool: the lock lives as long as it does.
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(5),
            self.config.connect(self.tls.clone()),
        )
        .await
        .map_err(|_| StoreError::Unavailable("PostgreSQL: connect timed out".into()))?
        .map_err(err)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&task_key(task)])
            .await
            .map_err(err)?
            .get(0);
        if got {
            tracing::info!(task, "this node now runs the background task");
            leases.insert(task.to_owned(), client);
        }
        Ok(got)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute("SELECT 1", &[]).await.map(|_| ()).map_err(err)
    }
    async fn schema_version(&self) -> Result<i64, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await
            .map_err(err)?;
        Ok(row.get(0))
    }
}
