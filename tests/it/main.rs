//! The integration tests, one binary: a module per suite, and `support` with the set-ups they
//! share (stacks, households, the Lambda-binary world, DynamoDB Local, log capture).
//!
//! One binary links the crate and the AWS SDK once instead of once per suite. Tests run in
//! parallel threads of one process, so nothing here may rely on process-wide state: logs are
//! captured per test runtime (support::logs), never by a global subscriber (the one test that
//! needs one, no_pin_in_logs, is a binary of its own); no test sets an environment variable or
//! changes the working directory.
//!
//! Run one suite with its module path as a filter: `scripts/test --test it duress::`.

mod support;

mod account_linking;
mod account_mapping;
mod browser;
mod certification;
mod concurrent_guesses;
mod conformance;
mod contracts;
mod crash_points;
mod duress;
mod echo_alerts;
mod enrolment;
mod events;
mod google;
mod hostile;
mod lambda_binaries;
mod manifest;
mod metrics;
mod monitoring;
mod openapi;
mod panel_client;
mod provisioning;
mod readme;
mod second_path;
mod secrets;
mod sim_clock;
mod store_conformance;
mod store_faults;
