//! Wrappers for values that must never be printed: spoken PINs, bearer tokens, grant codes and
//! configured secrets. Their `Debug` output is fixed, so `?value` in a log line or a panic
//! message can't leak them; reading the value takes an explicit `expose()`.

use std::fmt;

/// `Debug` for a type that holds secrets (keys, client secrets, tokens): its name and the
/// listed fields only, the rest shown as `..`, so a `{:?}` of it can't put a secret in a log.
macro_rules! debug_without_secrets {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    $(.field(stringify!($field), &self.$field))*
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use debug_without_secrets;

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident, $shown:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($shown)
            }
        }
    };
}

secret_type!(
    /// A code spoken to Alexa, exactly as received (leading zeros kept).
    Pin,
    "Pin(****)"
);
secret_type!(
    /// An OAuth bearer token or authorization code.
    BearerToken,
    "BearerToken(redacted)"
);
secret_type!(
    /// A configured secret: API key, client secret, webhook secret.
    Secret,
    "Secret(redacted)"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(format!("{:?}", Pin::new("4729")), "Pin(****)");
        assert_eq!(
            format!("{:?}", BearerToken::new("eyJabc")),
            "BearerToken(redacted)"
        );
        assert_eq!(format!("{:?}", Secret::new("s3cr3t")), "Secret(redacted)");
        assert_eq!(Pin::new("0472").expose(), "0472");
    }
}
