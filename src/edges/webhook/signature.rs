//! HMAC signatures on webhook requests, shared by the sender (panel cloud, simulator) and the
//! receiver (the skill's webhook).

use aws_lc_rs::{constant_time, hmac};
use chrono::{DateTime, Utc};

use super::TOLERANCE_S;
use crate::common::secret::Secret;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing or malformed timestamp")]
    BadTimestamp,
    #[error("timestamp outside the accepted window")]
    Stale,
    #[error("missing or malformed signature")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
}

fn tag(secret: &Secret, timestamp: i64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    ctx.sign()
}

/// The `X-Alarm-Signature` header value for `body` signed at `timestamp`.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    format!("v1={}", hex::encode(tag(secret, timestamp, body).as_ref()))
}

/// Checks the timestamp window and the signature, in constant time.
pub fn verify(
    secret: &Secret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp
        .and_then(|t| t.trim().parse().ok())
        .ok_or(SignatureError::BadTimestamp)?;
    // `abs_diff` can't overflow: a sender may put any i64 here, i64::MIN included.
    if now.timestamp().abs_diff(ts) > TOLERANCE_S.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let given = signature
        .and_then(|s| s.trim().strip_prefix("v1="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Malformed)?;
    let expected = tag(secret, ts, body);
    constant_time::verify_slices_are_equal(expected.as_ref(), &given)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_with_window() {
        let s = Secret::new("whsec");
        let now = Utc::now();
        let ts = now.timestamp();
        let sig = sign(&s, ts, b"{}");
        let t = ts.to_string();
        assert_eq!(verify(&s, Some(&t), Some(&sig), b"{}", now), Ok(()));
        assert_eq!(
            verify(&s, Some(&t), Some(&sig), b"{ }", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&Secret::new("other"), Some(&t), Some(&sig), b"{}", now),
            Err(SignatureError::Mismatch)
        );
        let later = now + chrono::Duration::seconds(TOLERANCE_S + 1);
        assert_eq!(
            verify(&s, Some(&t), Some(&sig), b"{}", later),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&s, None, Some(&sig), b"{}", now),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            verify(&s, Some(&t), Some("deadbeef"), b"{}", now),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let s = Secret::new("whsec");
        let now = Utc::now();
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX, -1, 0] {
            let t = ts.to_string();
            let sig = sign(&s, ts, b"{}");
            assert_eq!(
                verify(&s, Some(&t), Some(&sig), b"{}", now),
                Err(SignatureError::Stale),
                "{ts}"
            );
        }
        // The window's edges, both ways.
        let ts = now.timestamp();
        for edge in [ts - TOLERANCE_S, ts + TOLERANCE_S] {
            let sig = sign(&s, edge, b"{}");
            assert_eq!(
                verify(&s, Some(&edge.to_string()), Some(&sig), b"{}", now),
                Ok(())
            );
        }
    }
}
