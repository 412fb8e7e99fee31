//! The fallback log: when the store refuses a forensic row, the record is appended
//! as one JSON line to `{dir}/{name}-YYYY-MM-DD.jsonl` (UTC date), so even an outage
//! of the database leaves a trace of every request. Off by default.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::Utc;
use payhook_domain::{Outcome, WebhookRequest};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct FallbackLog {
    dir: PathBuf,
    name: String,
    /// One writer at a time, so lines never interleave.
    lock: Arc<Mutex<()>>,
}

impl FallbackLog {
    pub fn new(dir: PathBuf, name: String) -> Self {
        Self {
            dir,
            name,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// Appends the record and syncs it to disk; `Err` if the file did not take it.
    pub async fn append(&self, request: &WebhookRequest, outcome: &Outcome) -> std::io::Result<()> {
        let now = Utc::now();
        let path = self.dir.join(format!("{}-{}.jsonl", self.name, now.format("%Y-%m-%d")));
        let mut line = serde_json::to_vec(&serde_json::json!({
            "written_at": now,
            "received_at": request.received_at,
            "provider": request.provider,
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "raw_body_base64": BASE64.encode(&request.body),
            "remote_addr": request.remote_addr,
            "event_id": request.primary.event_id,
            "event_type": request.primary.event_type,
            "external_id": request.primary.external_id,
            "provider_status": request.primary.provider_status,
            "amount": request.primary.amount,
            "http_status": outcome.http_status,
            "processing_result": outcome.result.as_str(),
            "processing_error": outcome.error,
        }))?;
        line.push(b'\n');
        let (dir, lock) = (self.dir.clone(), self.lock.clone());
        tokio::task::spawn_blocking(move || {
            let _guard = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            std::fs::create_dir_all(&dir)?;
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            file.write_all(&line)?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }
}
