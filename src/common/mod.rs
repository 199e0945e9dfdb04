//! Helpers with no domain knowledge: time, deadlines, secrets in memory, typed fields of
//! untrusted JSON, HTTP error bodies and crash points. Depends on no other layer.

pub mod clock;
pub mod crash;
pub mod deadline;
pub mod http_errors;
pub mod json_fields;
pub mod secret;

/// 1 to `max_len` of `[A-Za-z0-9_-]`: a label safe to log, to put in a key or a URL path, and to
/// split at any other character (pepper ids, panel and zone ids).
pub fn is_label(id: &str, max_len: usize) -> bool {
    !id.is_empty()
        && id.len() <= max_len
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
