//! Account linking: access tokens verified as JWTs of the configured OAuth/OIDC issuer
//! ([`crate::domain::ports::account_link::TokenVerifier`]).

pub mod issuer;
pub mod jwks;

pub use jwks::{JwksVerifier, install_crypto_provider};
