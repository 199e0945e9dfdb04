//! The pepper keyring: secret keys that live outside the store (Secrets Manager in production).
//!
//! - Voice codes are stored as `HMAC-SHA256(pepper, domain ‖ household ‖ member ‖ pin)`. A dump of
//!   the store without the pepper can't be checked against the 10⁴ possible PINs.
//! - Each stored value records the id of the pepper that made it. Rotation adds a new pepper and
//!   makes it current; codes hashed under the old one keep verifying while it stays in the ring.
//! - The same keys, under other domain strings, seal outbox records and Login-with-Amazon tokens.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::common::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

pub const MAC_LEN: usize = 32;

#[cfg(test)]
thread_local! {
    /// HMACs computed on this thread: lets unit tests check that the work done is the same
    /// whichever codes a household holds.
    pub(crate) static MACS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The number of HMACs `f` computes on this thread.
#[cfg(test)]
pub(crate) fn macs_in<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = MACS.with(std::cell::Cell::get);
    let out = f();
    (out, MACS.with(std::cell::Cell::get) - before)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("the keyring is empty")]
    Empty,
    #[error("the current pepper id {0:?} is not in the keyring")]
    UnknownCurrent(String),
    #[error("pepper {0:?} is shorter than 32 bytes")]
    TooShort(String),
    #[error("pepper {0:?} is not valid base64")]
    NotBase64(String),
    #[error("pepper ids must be 1-32 of [A-Za-z0-9_-], got {0:?}")]
    BadId(String),
    #[error("keyring spec must be JSON {{\"current\":id,\"peppers\":{{id:base64}}}}: {0}")]
    Spec(String),
}

pub struct Keyring {
    current: String,
    keys: BTreeMap<String, HmacSha256>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct Spec {
    current: String,
    peppers: BTreeMap<String, String>,
}

impl Keyring {
    /// `peppers` maps id to raw key bytes (at least 32).
    pub fn new(current: &str, peppers: BTreeMap<String, Vec<u8>>) -> Result<Self, KeyringError> {
        if peppers.is_empty() {
            return Err(KeyringError::Empty);
        }
        let mut keys = BTreeMap::new();
        for (id, bytes) in peppers {
            if !Keyring::is_valid_id(&id) {
                return Err(KeyringError::BadId(id));
            }
            if bytes.len() < 32 {
                return Err(KeyringError::TooShort(id));
            }
            let mac = <HmacSha256 as KeyInit>::new_from_slice(&bytes)
                .map_err(|_| KeyringError::TooShort(id.clone()))?;
            keys.insert(id, mac);
        }
        if !keys.contains_key(current) {
            return Err(KeyringError::UnknownCurrent(current.to_string()));
        }
        Ok(Keyring {
            current: current.to_string(),
            keys,
        })
    }

    /// Pepper ids are 1-32 of `[A-Za-z0-9_-]`: short, printable labels that are safe to log and
    /// to split a seal at (`{id}.{base64}`).
    pub fn is_valid_id(id: &str) -> bool {
        crate::common::is_label(id, 32)
    }

    /// Parses the secret's JSON form: `{"current":"p2","peppers":{"p1":"<base64>","p2":"<base64>"}}`.
    pub fn from_json(spec: &Secret) -> Result<Self, KeyringError> {
        let spec: Spec = serde_json::from_str(spec.expose())
            // serde's message could quote a pepper; keep only its position.
            .map_err(|e| KeyringError::Spec(format!("line {} column {}", e.line(), e.column())))?;
        let mut peppers = BTreeMap::new();
        for (id, b64) in spec.peppers {
            let bytes = B64
                .decode(b64.trim())
                .map_err(|_| KeyringError::NotBase64(id.clone()))?;
            peppers.insert(id, bytes);
        }
        Keyring::new(&spec.current, peppers)
    }

    /// A keyring with one fresh random pepper: the local stack's default, so no pepper ever
    /// has to be written down for development.
    pub fn random() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::fill(&mut bytes[..]);
        let mut peppers = BTreeMap::new();
        let id = format!("local-{:08x}", rand::random::<u32>());
        peppers.insert(id.clone(), bytes);
        // Cannot fail: the id matches the pattern and the key is 32 bytes.
        match Keyring::new(&id, peppers) {
            Ok(k) => k,
            Err(e) => unreachable!("random keyring is always valid: {e}"),
        }
    }

    pub fn current_id(&self) -> &str {
        &self.current
    }

    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// HMAC over length-prefixed parts under pepper `id`, so ("ab","c") and ("a","bc") differ.
    /// An unknown id computes under the current pepper anyway, keeping the work per code the
    /// same, and reports `None`.
    pub fn mac(&self, id: &str, parts: &[&[u8]]) -> (Option<()>, [u8; MAC_LEN]) {
        #[cfg(test)]
        MACS.with(|n| n.set(n.get() + 1));
        let (found, key) = match self.keys.get(id) {
            Some(k) => (Some(()), k),
            None => (None, &self.keys[&self.current]),
        };
        let mut m = key.clone();
        for p in parts {
            m.update(&(p.len() as u32).to_be_bytes());
            m.update(p);
        }
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&m.finalize().into_bytes());
        (found, out)
    }

    pub fn mac_current(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        self.mac(&self.current, parts).1
    }

    fn aead_key(&self, id: &str) -> Option<LessSafeKey> {
        let (found, derived) = self.mac(id, &[b"alarm-skill/aead/v1"]);
        found?;
        let unbound = UnboundKey::new(&AES_256_GCM, &derived).ok()?;
        Some(LessSafeKey::new(unbound))
    }

    /// Encrypts `plaintext` with AES-256-GCM under a key derived from the current pepper.
    /// Output: `{pepper_id}.{base64(nonce ‖ ciphertext ‖ tag)}`. `aad` binds it to its owner.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        let Some(key) = self.aead_key(&self.current) else {
            unreachable!("the current pepper is always in the ring")
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let mut buf = plaintext.to_vec();
        // Sealing only fails for inputs over AES-GCM's 64 GiB limit.
        if key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .is_err()
        {
            unreachable!("AES-GCM input far below the size limit")
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{}.{}", self.current, B64.encode(out))
    }

    /// The id of the pepper `sealed` (an output of [`Keyring::seal`]) was sealed under, as it
    /// claims: lets a holder tell a seal it can't open because it lacks the pepper (reload the
    /// keyring) from one that was altered.
    pub fn sealed_pepper_id(sealed: &str) -> Option<&str> {
        sealed.split_once('.').map(|(id, _)| id)
    }

    pub fn open(&self, sealed: &str, aad: &[u8]) -> Option<Vec<u8>> {
        let (id, b64) = sealed.split_once('.')?;
        let key = self.aead_key(id)?;
        let raw = B64.decode(b64).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ct.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(current: &str, ids: &[(&str, u8)]) -> Keyring {
        let peppers = ids
            .iter()
            .map(|(id, b)| (id.to_string(), vec![*b; 32]))
            .collect();
        Keyring::new(current, peppers).unwrap()
    }

    #[test]
    fn macs_depend_on_pepper_and_part_boundaries() {
        let a = ring("p1", &[("p1", 1), ("p2", 2)]);
        assert_ne!(a.mac("p1", &[b"x"]).1, a.mac("p2", &[b"x"]).1);
        assert_ne!(a.mac("p1", &[b"ab", b"c"]).1, a.mac("p1", &[b"a", b"bc"]).1);
        assert_eq!(a.mac("nope", &[b"x"]).0, None);
    }

    #[test]
    fn rejects_bad_keyrings() {
        let short = [("p".to_string(), vec![0u8; 16])].into_iter().collect();
        assert_eq!(
            Keyring::new("p", short).unwrap_err(),
            KeyringError::TooShort("p".into())
        );
        let ok = [("p".to_string(), vec![0u8; 32])].into_iter().collect();
        assert_eq!(
            Keyring::new("q", ok).unwrap_err(),
            KeyringError::UnknownCurrent("q".into())
        );
        let err = Keyring::from_json(&Secret::new(
            "{\"current\":\"p\",\"peppers\":{\"p\":\"!!\"}}",
        ))
        .unwrap_err();
        assert_eq!(err, KeyringError::NotBase64("p".into()));
    }

    #[test]
    fn sealed_values_open_after_rotation_and_not_under_another_owner() {
        let old = ring("p1", &[("p1", 1)]);
        let sealed = old.seal(b"Atzr|refresh", b"acct-1");
        assert!(!sealed.contains("Atzr"));
        let rotated = ring("p2", &[("p1", 1), ("p2", 2)]);
        assert_eq!(rotated.open(&sealed, b"acct-1").unwrap(), b"Atzr|refresh");
        assert!(rotated.open(&sealed, b"acct-2").is_none());
        assert!(ring("p2", &[("p2", 2)]).open(&sealed, b"acct-1").is_none());
        assert_eq!(Keyring::sealed_pepper_id(&sealed), Some("p1"));
        assert_eq!(
            Keyring::sealed_pepper_id(&rotated.seal(b"x", b"acct-1")),
            Some("p2")
        );
        assert_eq!(Keyring::sealed_pepper_id("no-dot"), None);
    }
}
