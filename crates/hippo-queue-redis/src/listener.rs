//! One pub/sub connection per server, kept open by a background task: it wakes
//! result waiters and forwards revocations to workers. After a reconnection every
//! waiter is woken once so that it looks again at what it may have missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use hippo_queue_core::backend::Revocation;
use hippo_queue_core::codec::Codec;
use hippo_queue_core::control::Request;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// Where notifications go.
#[derive(Default)]
pub(crate) struct Hub {
    waiters: Mutex<HashMap<String, (Arc<Slot>, usize)>>,
    revocations: Mutex<Vec<mpsc::Sender<Revocation>>>,
    control: Mutex<Vec<mpsc::Sender<Request>>>,
}

/// Where a published result lands for the waiters of one task.
#[derive(Default)]
pub(crate) struct Slot {
    pub notify: Notify,
    data: Mutex<Option<Vec<u8>>>,
}

impl Slot {
    /// The encoded record that was published, if any.
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        self.data.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A registered waiter; unregisters on drop.
pub(crate) struct Waiter<'a> {
    hub: &'a Hub,
    id: String,
    pub slot: Arc<Slot>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut w = self.hub.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = w.get_mut(&self.id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                w.remove(&self.id);
            }
        }
    }
}

impl Hub {
    pub(crate) fn wait_for<'a>(&'a self, id: &str) -> Waiter<'a> {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let entry = w
            .entry(id.to_string())
            .or_insert_with(|| (Arc::new(Slot::default()), 0));
        entry.1 += 1;
        Waiter {
            hub: self,
            id: id.to_string(),
            slot: entry.0.clone(),
        }
    }

    /// A published result: `<id length>:<id><encoded record>`.
    fn result_ready(&self, msg: &[u8]) {
        let Some((id, data)) = split_announcement(msg) else {
            tracing::warn!("ignored a malformed result announcement");
            return;
        };
        if let Some((slot, _)) = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id.as_str())
        {
            *slot.data.lock().unwrap_or_else(|p| p.into_inner()) = Some(data.to_vec());
            slot.notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for (slot, _) in self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            slot.notify.notify_waiters();
        }
    }

    pub(crate) fn subscribe(&self) -> mpsc::Receiver<Revocation> {
        let (tx, rx) = mpsc::channel(1024);
        self.revocations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    pub(crate) fn subscribe_control(&self) -> mpsc::Receiver<Request> {
        let (tx, rx) = mpsc::channel(256);
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    fn control_request(&self, r: Request) {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|tx| match tx.try_send(r.clone()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }

    fn revoked(&self, r: Revocation) {
        self.revocations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|tx| match tx.try_send(r.clone()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }
}

fn split_announcement(msg: &[u8]) -> Option<(String, &[u8])> {
    let colon = msg.iter().position(|c| *c == b':')?;
    let len: usize = std::str::from_utf8(&msg[..colon]).ok()?.parse().ok()?;
    let rest = &msg[colon + 1..];
    (rest.len() >= len).then(|| {
        (
            String::from_utf8_lossy(&rest[..len]).into_owned(),
            &rest[len..],
        )
    })
}

/// Encodes a revocation as a channel message: `<terminate 0|1>:<until ms>:<id>`.
pub(crate) fn encode_revocation(r: &Revocation) -> String {
    format!("{}:{}:{}", u8::from(r.terminate), r.until, r.id)
}

pub(crate) fn decode_revocation(s: &str) -> Option<Revocation> {
    let mut parts = s.splitn(3, ':');
    let terminate = parts.next()? == "1";
    let until = parts.next()?.parse().ok()?;
    let id = parts.next()?.to_string();
    Some(Revocation {
        id,
        terminate,
        until,
    })
}

/// What a listener subscribes to.
pub(crate) struct Channels {
    pub results: Option<String>,
    pub revocations: Option<String>,
    pub control: Option<String>,
}

/// Starts the listener task; it runs until aborted.
pub(crate) fn spawn(client: redis::Client, channels: Channels, hub: Arc<Hub>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            match listen(&client, &channels, &hub).await {
                Ok(()) => tracing::warn!("pub/sub connection closed; reconnecting"),
                Err(e) => {
                    tracing::warn!(error = %e, "pub/sub connection failed; reconnecting in {delay:?}")
                }
            }
            hub.wake_all();
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    })
}

async fn listen(client: &redis::Client, ch: &Channels, hub: &Hub) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    let names: Vec<&String> = ch
        .results
        .iter()
        .chain(ch.revocations.iter())
        .chain(ch.control.iter())
        .collect();
    pubsub.subscribe(names).await?;
    // Anything published while we were away: let waiters look again.
    hub.wake_all();
    let mut stream = pubsub.on_message();
    while let Some(msg) = stream.next().await {
        let channel = msg.get_channel_name();
        if ch.results.as_deref() == Some(channel) {
            hub.result_ready(msg.get_payload_bytes());
        } else if ch.control.as_deref() == Some(channel) {
            match Codec::default().decode::<Request>(msg.get_payload_bytes()) {
                Ok(r) => hub.control_request(r),
                Err(e) => tracing::warn!(error = %e, "ignored a malformed control request"),
            }
        } else if ch.revocations.as_deref() == Some(channel) {
            let payload = String::from_utf8_lossy(msg.get_payload_bytes());
            match decode_revocation(&payload) {
                Some(r) => hub.revoked(r),
                None => tracing::warn!(%payload, "ignored a malformed revocation message"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_round_trip() {
        let r = Revocation {
            id: "a:b-c".into(),
            terminate: true,
            until: 1234,
        };
        assert_eq!(decode_revocation(&encode_revocation(&r)), Some(r));
        assert_eq!(decode_revocation("junk"), None);
    }
}
