//! The MLLP listener (`mllp_port`): HL7 v2 messages over TCP from hospital systems and
//! interface engines, framed by the Minimal Lower Layer Protocol (HL7 v2.5 Appendix C;
//! MLLP Release 2): `0x0B <message> 0x1C 0x0D`. Each frame's message (or batch) is
//! imported by `renkei_share::hl7` and every message answered by its ACK in a frame of its
//! own, in the character set the message came in.
//!
//! The ACK is the answer, as every HL7 v2 engine expects (Release 1 behaviour); Release 2's
//! commit-acknowledgement blocks (a frame holding only 0x06 or 0x15) that a peer sends are
//! accepted and ignored. A connection carries any number of messages, one after the other.
//!
//! Who records: MLLP has no credentials, so the listener is a trusted interface of the
//! region — each message is recorded by the facility its MSH-4 names, as
//! `Actor::Ae { title: "MLLP", facility: <MSH-4's facility> }` (the same kind of actor as a
//! facility's modality storing images over DICOM), and a message whose MSH-4 is not a
//! registered facility (code or declared issuer) is answered AR. Bind it where only the
//! hospital systems reach it (the node's `bind` address; loopback by default).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use renkei_share::{Actor, Share};

/// Start block.
const SB: u8 = 0x0B;
/// End block.
const EB: u8 = 0x1C;
/// Carriage return after the end block.
const CR: u8 = 0x0D;
/// Largest frame accepted (a batch of a day's results fits; more is an error).
const MAX_FRAME: usize = 32 << 20;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// Silence after which a connection is closed.
const IDLE: Duration = Duration::from_secs(600);

/// Accept connections until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    share: Arc<Share>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "MLLP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    warn!(%peer, "MLLP: too many connections, closing this one");
                    continue;
                };
                let (share, stop) = (share.clone(), stop.clone());
                tokio::spawn(async move {
                    debug!(%peer, "MLLP connection");
                    if let Err(e) = connection(stream, share, stop).await {
                        info!(%peer, error = %e, "MLLP connection closed");
                    }
                    drop(slot);
                });
            }
        }
    }
}

/// Serve one connection: frames in, ACK frames out.
async fn connection(
    mut stream: TcpStream,
    share: Arc<Share>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // whether a frame may have ended: the buffer is scanned when a read brought an end
    // block (or the CR after one), not after every read of a long frame
    let mut ready = false;
    loop {
        // answer every complete frame in the buffer
        while let Some((message, used)) = ready.then(|| next_frame(&buf)).flatten() {
            buf.drain(..used);
            if matches!(message.as_slice(), [0x06] | [0x15]) {
                continue; // an MLLP Release 2 commit acknowledgement of ours
            }
            let share = share.clone();
            let acks = tokio::task::spawn_blocking(move || {
                share.import_hl7_batch(
                    &Actor::Ae {
                        title: "MLLP".into(),
                        facility: None,
                    },
                    &message,
                )
            })
            .await
            .map_err(std::io::Error::other)?;
            for ack in acks {
                debug!(code = ack.code.as_str(), control_id = %ack.control_id, "MLLP ACK");
                let mut frame = Vec::with_capacity(512);
                frame.push(SB);
                frame.extend_from_slice(&ack.encoded());
                frame.extend_from_slice(&[EB, CR]);
                stream.write_all(&frame).await?;
            }
            stream.flush().await?;
        }
        if buf.len() > MAX_FRAME {
            return Err(std::io::Error::other(format!(
                "frame longer than {} MiB",
                MAX_FRAME >> 20
            )));
        }
        let n = tokio::select! {
            _ = stop.changed() => return Ok(()),
            r = tokio::time::timeout(IDLE, stream.read(&mut chunk)) => match r {
                Ok(r) => r?,
                Err(_) => return Err(std::io::Error::other("idle timeout")),
            },
        };
        if n == 0 {
            return Ok(());
        }
        ready = chunk[..n].contains(&EB) || buf.last() == Some(&EB);
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The first complete frame of `buf`: (its content, bytes used). Bytes before a start block
/// are dropped (noise, or a peer's stray CR/LF); an end block without CR is accepted.
fn next_frame(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let start = buf.iter().position(|&b| b == SB)?;
    let body = &buf[start + 1..];
    let end = body.iter().position(|&b| b == EB)?;
    let after = start + 1 + end + 1;
    // the CR after EB: wait for it unless something else already follows
    let used = match buf.get(after) {
        Some(&CR) => after + 1,
        Some(_) => after,
        None => return None,
    };
    if start > 0 && buf[..start].iter().any(|b| !b.is_ascii_whitespace()) {
        warn!(bytes = start, "MLLP: data before the start block dropped");
    }
    Some((body[..end].to_vec(), used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(next_frame(b""), None);
        assert_eq!(next_frame(b"\x0bMSH|"), None);
        assert_eq!(next_frame(b"\x0bMSH|\x1c"), None);
        assert_eq!(
            next_frame(b"\x0bMSH|a\x1c\x0d\x0bMSH|b"),
            Some((b"MSH|a".to_vec(), 8))
        );
        assert_eq!(
            next_frame(b"\r\n\x0bX\x1c\x0bY\x1c\x0d"),
            Some((b"X".to_vec(), 5))
        );
    }
}
