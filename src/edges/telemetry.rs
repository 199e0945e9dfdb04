//! Logging set-up: JSON lines on Lambda, human-readable locally.
//!
//! No call site of ours logs a PIN, token or secret: those types print as redacted
//! (crate::common::secret), and directives are logged only through crate::wire::alexa::redact. Other crates
//! are not so careful below INFO: `lambda_runtime` logs every raw invocation body at TRACE (the
//! spoken PIN, the bearer token, a management body's `{"pin": ...}`), and hyper, reqwest and the
//! AWS SDK log requests and headers at DEBUG/TRACE. So only this crate's own targets follow the
//! requested level; every other crate is capped at INFO whatever the configuration says, and a
//! level setting is a plain level, never a filter directive that could re-enable one of them.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// The targets that follow the configured level: the library and the binaries' own crates.
const OWN_TARGETS: [&str; 4] = ["alarm_skill", "bootstrap", "http_api", "redelivery"];

/// The filter for a requested level: `level` for our own targets, at most INFO for the rest.
/// Anything but a plain level (`trace`, `debug`, `info`, `warn`, `error`, `off`, any case) means
/// INFO: a directive string such as `hyper=trace` is refused rather than trusted.
pub fn filter(requested: Option<&str>) -> EnvFilter {
    let level = requested
        .and_then(|l| l.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let others = level.min(LevelFilter::INFO);
    let mut directives = others.to_string().to_lowercase();
    for target in OWN_TARGETS {
        directives.push_str(&format!(",{target}={}", level.to_string().to_lowercase()));
    }
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Lambda: JSON, with the runtime's span (which carries the request id) on every line. The
/// level follows `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`, then `info` (see [`filter`]). Lines
/// carry an RFC 3339 `timestamp`: Lambda's JSON log format only applies its log-level filter to
/// lines that have one (otherwise every line counts as INFO).
pub fn init_lambda() {
    let requested = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    // try_init: a second initialisation (tests, or a runtime that set one) is not an error.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter(requested.as_deref()))
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// Local tools: compact text to stderr, at `RUST_LOG`'s level (see [`filter`]) or `info`.
pub fn init_local() {
    let requested = std::env::var("RUST_LOG").ok();
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(requested.as_deref()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .compact()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(requested: Option<&str>) -> String {
        filter(requested).to_string()
    }

    #[test]
    fn only_our_targets_follow_the_requested_level() {
        let f = shown(Some("TRACE"));
        assert!(f.starts_with("info,") || f.contains(",info"), "{f}");
        for t in OWN_TARGETS {
            assert!(f.contains(&format!("{t}=trace")), "{f}");
        }
        assert!(!f.contains("lambda_runtime"), "{f}");
        // Quieter than INFO applies to everyone.
        let f = shown(Some("warn"));
        assert!(f.contains("alarm_skill=warn"), "{f}");
        assert!(!f.contains("info"), "{f}");
    }

    #[test]
    fn directive_strings_and_junk_mean_info() {
        for r in [
            None,
            Some("lambda_runtime=trace"),
            Some("trace,hyper=trace"),
            Some("loud"),
        ] {
            let f = shown(r);
            assert!(f.contains("alarm_skill=info"), "{r:?}: {f}");
            assert!(!f.contains("trace"), "{r:?}: {f}");
        }
    }
}
