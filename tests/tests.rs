//! End-to-end tests of the `hookflow` binary. One test binary; modules by area.

mod authoring;
mod browser;
mod cli;
mod destinations;
mod harness;
mod history;
mod http;
mod instances;
mod limits;
mod nodes;
mod observe;
mod offline_tests;
mod onboarding;
mod panics;
mod retries;
mod runs;
mod secrets;
mod store;
mod test_cases;
mod trust;
mod ui;
mod upstream;
