//! One shared database client that reconnects when the connection drops.

use tokio::sync::Mutex;
use tokio_postgres::Client;

pub struct Db {
    url: String,
    client: Mutex<Option<std::sync::Arc<Client>>>,
}

impl Db {
    pub async fn connect(url: String) -> anyhow::Result<Db> {
        let client = tapeflow_db::connect(&url, std::time::Duration::from_secs(30)).await?;
        Ok(Db { url, client: Mutex::new(Some(std::sync::Arc::new(client))) })
    }

    /// A live client; reconnects once if the previous connection is closed.
    pub async fn client(&self) -> anyhow::Result<std::sync::Arc<Client>> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c =
            std::sync::Arc::new(tapeflow_db::connect(&self.url, std::time::Duration::from_secs(5)).await?);
        *guard = Some(c.clone());
        Ok(c)
    }
}
