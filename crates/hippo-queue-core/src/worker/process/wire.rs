//! The frames parent and child exchange over the child's socket: a 4-byte big-endian
//! length, then one MessagePack value.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::TaskError;

/// The largest frame either side accepts (a task's arguments or output, with room).
pub(super) const MAX_FRAME: usize = 256 * 1024 * 1024;

/// What the parent sends.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum ToChild {
    /// Run one task.
    Run(RunTask),
    /// The running task's soft time limit passed.
    SoftLimit,
}

/// One task for a child to run: what its context needs, and its arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunTask {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) retries: u32,
    pub(crate) max_retries: u32,
    pub(crate) queue: String,
    pub(crate) root_id: Option<String>,
    pub(crate) parent_id: Option<String>,
    pub(crate) worker: String,
    #[serde(with = "serde_bytes")]
    pub(crate) args: Vec<u8>,
}

/// What a child sends.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum FromChild {
    /// First frame after connecting: proves who is calling.
    Hello { token: String, pid: u32 },
    /// The task ended; `rss` is the child's resident memory afterwards, in bytes
    /// (0 where it cannot be read).
    Done { end: ChildEnd, rss: u64 },
}

/// How a task ended in the child.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum ChildEnd {
    /// The output, as MessagePack.
    Output(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The task's error.
    Error(WireError),
    /// The task panicked, with this message.
    Panicked(String),
}

/// A [`TaskError`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WireError {
    kind: String,
    message: String,
    chain: Vec<String>,
    /// `Some` when a retry was asked for, with its countdown in ms if any.
    retry: Option<Option<u64>>,
    reject: bool,
}

impl From<&TaskError> for WireError {
    fn from(e: &TaskError) -> Self {
        let f = e.to_failure();
        WireError {
            kind: f.kind,
            message: f.message,
            chain: f.chain,
            retry: e
                .retry_requested()
                .then(|| e.retry_countdown().map(crate::time::duration_ms)),
            reject: e.is_reject(),
        }
    }
}

impl From<WireError> for TaskError {
    fn from(w: WireError) -> Self {
        let mut e = TaskError::new(w.kind, w.message);
        for cause in w.chain {
            e = e.caused_by(cause);
        }
        match (w.retry, w.reject) {
            (_, true) => e.reject(),
            (Some(Some(ms)), _) => e.retry_in(Duration::from_millis(ms)),
            (Some(None), _) => e.retry(),
            (None, false) => e,
        }
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(super) enum WireFault {
    /// The other side closed the socket.
    #[error("the other side closed the connection")]
    Closed,
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame over [`MAX_FRAME`].
    #[error("a frame of {0} bytes is over the {MAX_FRAME} bytes allowed")]
    TooLarge(usize),
    /// A frame that is not the expected value.
    #[error("a frame could not be decoded: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// A value that could not be encoded.
    #[error("a frame could not be encoded: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Writes one frame.
pub(super) async fn write<W, T>(w: &mut W, value: &T) -> Result<(), WireFault>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = rmp_serde::to_vec(value)?;
    if body.len() > MAX_FRAME {
        return Err(WireFault::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| WireFault::TooLarge(body.len()))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame; [`WireFault::Closed`] at a clean end of stream.
pub(super) async fn read<R, T>(r: &mut R) -> Result<T, WireFault>
where
    R: AsyncRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireFault::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(WireFault::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(rmp_serde::from_slice(&body)?)
}

/// Reads frames in a task of its own, so that waiting for one (in a `select!`)
/// never cuts another in half; the channel closes after the first error.
pub(super) fn reader<T>(
    mut rd: tokio::net::unix::OwnedReadHalf,
) -> tokio::sync::mpsc::Receiver<Result<T, WireFault>>
where
    T: for<'de> Deserialize<'de> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let frame = read::<_, T>(&mut rd).await;
            let last = frame.is_err();
            if tx.send(frame).await.is_err() || last {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_errors_keep_their_action() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let err = TaskError::new("Flaky", "try again")
            .caused_by("upstream")
            .retry_in(Duration::from_millis(1500));
        let end = ChildEnd::Error(WireError::from(&err));
        write(&mut a, &FromChild::Done { end, rss: 7 })
            .await
            .unwrap();
        let got: FromChild = read(&mut b).await.unwrap();
        let FromChild::Done {
            end: ChildEnd::Error(w),
            rss: 7,
        } = got
        else {
            panic!("unexpected frame {got:?}");
        };
        let back = TaskError::from(w);
        assert_eq!(back.kind(), "Flaky");
        assert_eq!(back.retry_countdown(), Some(Duration::from_millis(1500)));
        assert_eq!(back.to_failure().chain, vec!["upstream".to_string()]);
        let rejected = TaskError::from(WireError::from(&TaskError::msg("no").reject()));
        assert!(rejected.is_reject());
    }

    #[tokio::test]
    async fn a_closed_stream_and_an_oversized_frame_are_named() {
        let (a, mut b) = tokio::io::duplex(64);
        drop(a);
        assert!(matches!(
            read::<_, FromChild>(&mut b).await,
            Err(WireFault::Closed)
        ));
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read::<_, FromChild>(&mut b).await,
            Err(WireFault::TooLarge(_))
        ));
    }
}
