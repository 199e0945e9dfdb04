//! Logging set-up: JSON lines on Lambda, human-readable locally. No call site logs a PIN,
//! token or secret: those types print as redacted (crate::secret), and directives are logged
//! only through crate::alexa::redact.

use tracing_subscriber::EnvFilter;

/// Lambda: JSON, with the runtime's span (which carries the request id) on every line. The
/// level follows `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`, then `info`. Lines carry an RFC 3339
/// `timestamp`: Lambda's JSON log format only applies its log-level filter to lines that have
/// one (otherwise every line counts as INFO).
pub fn init_lambda() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string())
        .to_lowercase();
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    // try_init: a second initialisation (tests, or a runtime that set one) is not an error.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// Local tools: compact text to stderr, `RUST_LOG` or `info`.
pub fn init_local() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .compact()
        .try_init();
}
