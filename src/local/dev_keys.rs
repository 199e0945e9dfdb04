//! The RSA keys of the local stack's dev issuer and dev Google service account: generated once
//! per process and role, then each stack gets its own parsed copy.
//!
//! Why not one per stack: generating an RSA-2048 key costs 0.1–0.3 s of CPU in a debug build
//! (aws-lc's prime search), and the integration tests build several hundred stacks in one
//! process. Measured with `perf record -a` over `scripts/test`, that was a quarter of the suite's
//! CPU. `alarm-skill serve` builds one stack, so it still gets keys made at its start, and they
//! still live only in memory.
//!
//! Stacks in one process therefore share keys, and tokens still never cross stacks: each stack's
//! issuer URL is its own (its port), its `kid` is fresh, and the verifier checks both. A test
//! about a token signed by another key makes that key with `DevIssuer::new`, which always
//! generates one.

use std::sync::Mutex;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};

/// What a key signs for: a stack's two keys are never the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The dev issuer's access tokens.
    Issuer,
    /// The dev Google service account's assertions.
    GoogleServiceAccount,
}

#[derive(Debug, thiserror::Error)]
#[error("generating or encoding the local stack's RSA key failed")]
pub struct KeyError;

// PKCS#8 DER, which is what a key pair can be copied through (it is not Clone).
static ISSUER: Mutex<Option<Vec<u8>>> = Mutex::new(None);
static GOOGLE: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// This process's RSA-2048 key for `role`, generated on the first call.
pub fn rsa_2048(role: Role) -> Result<RsaKeyPair, KeyError> {
    let slot = match role {
        Role::Issuer => &ISSUER,
        Role::GoogleServiceAccount => &GOOGLE,
    };
    // A poisoned lock only means another stack's start-up panicked; the bytes are whole.
    let mut der = slot.lock().unwrap_or_else(|p| p.into_inner());
    if der.is_none() {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError)?;
        *der = Some(key.as_der().map_err(|_| KeyError)?.as_ref().to_vec());
    }
    let der = der.as_deref().ok_or(KeyError)?;
    RsaKeyPair::from_pkcs8(der).map_err(|_| KeyError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::KeyPair;

    #[test]
    fn one_key_per_role_and_process_and_the_roles_differ() {
        let a = rsa_2048(Role::Issuer).unwrap();
        let b = rsa_2048(Role::Issuer).unwrap();
        let g = rsa_2048(Role::GoogleServiceAccount).unwrap();
        assert_eq!(a.public_key().as_ref(), b.public_key().as_ref());
        assert_ne!(a.public_key().as_ref(), g.public_key().as_ref());
        assert_eq!(a.public_modulus_len(), 256);
    }
}
