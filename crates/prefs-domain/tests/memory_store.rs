//! [`MemoryStore`] against the contract suite of the storage ports.

use std::sync::Arc;

use prefs_domain::{MemoryStore, Store};

#[tokio::test]
async fn memory_store_passes_the_contract() {
    prefs_domain::testing::run_all(|| async { Arc::new(MemoryStore::new()) as Arc<dyn Store> }).await;
}
