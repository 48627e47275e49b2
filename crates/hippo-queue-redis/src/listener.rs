//! One pub/sub connection per server, kept open by a background task: it wakes
//! result waiters and forwards revocations to workers. After a reconnection every
//! waiter is woken once so that it looks again at what it may have missed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hippo_queue_core::backend::Revocation;
use hippo_queue_core::codec::Codec;
use hippo_queue_core::control::Request;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// Where notifications go.
#[derive(Default)]
pub(crate) struct Hub {
    waiters: Mutex<HashMap<String, (Arc<Slot>, usize)>>,
    /// Counts the subscriptions of the results channel; 0 while it is down.
    results_generation: AtomicU64,
    generations: AtomicU64,
    /// Woken when the results channel is subscribed.
    results_up: Notify,
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
    /// The stored value that was published, if any.
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        self.data.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A registered waiter; unregisters on drop.
pub(crate) struct Waiter {
    hub: Arc<Hub>,
    id: String,
    pub slot: Arc<Slot>,
}

impl Waiter {
    /// The task waited for.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Waiter {
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
    pub(crate) fn wait_for(self: &Arc<Self>, id: &str) -> Waiter {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let entry = w
            .entry(id.to_string())
            .or_insert_with(|| (Arc::new(Slot::default()), 0));
        entry.1 += 1;
        Waiter {
            hub: self.clone(),
            id: id.to_string(),
            slot: entry.0.clone(),
        }
    }

    /// The current subscription of the results channel: a number that changes with
    /// every new subscription, or 0 while there is none. An announcement published
    /// while it stays the same was received.
    pub(crate) fn results_generation(&self) -> u64 {
        self.results_generation.load(Ordering::Acquire)
    }

    fn set_results_live(&self, live: bool) {
        let g = if live {
            self.generations.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            0
        };
        self.results_generation.store(g, Ordering::Release);
        if live {
            self.results_up.notify_waiters();
        }
    }

    /// Waits until the results channel is subscribed, or `limit` passes; returns
    /// whether it is.
    pub(crate) async fn results_subscribed(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let up = self.results_up.notified();
                tokio::pin!(up);
                up.as_mut().enable();
                if self.results_generation() != 0 {
                    return;
                }
                up.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// A published result: `<id length>:<id><stored value>`.
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

impl Channels {
    /// Hands one published message to the hub.
    fn dispatch(&self, hub: &Hub, channel: &[u8], payload: &[u8]) {
        if self.results.as_deref().map(str::as_bytes) == Some(channel) {
            hub.result_ready(payload);
        } else if self.control.as_deref().map(str::as_bytes) == Some(channel) {
            match Codec::default().decode::<Request>(payload) {
                Ok(r) => hub.control_request(r),
                Err(e) => tracing::warn!(error = %e, "ignored a malformed control request"),
            }
        } else if self.revocations.as_deref().map(str::as_bytes) == Some(channel) {
            let payload = String::from_utf8_lossy(payload);
            match decode_revocation(&payload) {
                Some(r) => hub.revoked(r),
                None => tracing::warn!(%payload, "ignored a malformed revocation message"),
            }
        }
    }
}

/// Starts the listener task; it runs until aborted.
///
/// The subscription uses RESP3 on a connection of its own: published messages are
/// handed to the hub by the connection's reader as they are read, with no task in
/// between.
pub(crate) fn spawn(client: redis::Client, channels: Channels, hub: Arc<Hub>) -> JoinHandle<()> {
    let channels = Arc::new(channels);
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            match listen(&client, &channels, &hub).await {
                Ok(()) => {
                    tracing::warn!("pub/sub connection closed; reconnecting");
                    delay = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pub/sub connection failed; reconnecting in {delay:?}")
                }
            }
            if channels.results.is_some() {
                hub.set_results_live(false);
            }
            hub.wake_all();
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    })
}

/// Subscribes and returns when the connection is lost.
async fn listen(
    client: &redis::Client,
    ch: &Arc<Channels>,
    hub: &Arc<Hub>,
) -> redis::RedisResult<()> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let closed = Arc::new(Notify::new());
    let sender = {
        let (ch, hub, closed) = (ch.clone(), hub.clone(), closed.clone());
        move |push: PushInfo| -> Result<(), Infallible> {
            match (push.kind, push.data.as_slice()) {
                (PushKind::Message, [Value::BulkString(channel), Value::BulkString(payload)]) => {
                    ch.dispatch(&hub, channel, payload)
                }
                (PushKind::Disconnection, _) => closed.notify_one(),
                _ => {}
            }
            Ok(())
        }
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_push_sender(sender);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let names: Vec<&String> = ch
        .results
        .iter()
        .chain(ch.revocations.iter())
        .chain(ch.control.iter())
        .collect();
    conn.subscribe(names).await?;
    if ch.results.is_some() {
        hub.set_results_live(true);
    }
    // Anything published while we were away: let waiters look again.
    hub.wake_all();
    // A connection can die without a word (a load balancer's idle timeout, a NAT
    // entry dropped, a host gone without a reset): a PING that gets no answer in time
    // ends it, and the caller subscribes again.
    loop {
        tokio::select! {
            _ = closed.notified() => return Ok(()),
            _ = tokio::time::sleep(KEEPALIVE) => {}
        }
        let ping = redis::cmd("PING");
        match tokio::time::timeout(KEEPALIVE_TIMEOUT, ping.query_async::<Value>(&mut conn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "pub/sub connection silent",
                    format!("no answer to PING within {KEEPALIVE_TIMEOUT:?}"),
                )));
            }
        }
    }
}

/// How often an idle subscription is checked.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// How long a check waits for its answer.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

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
