//! End-to-end tests of the `hookflow` binary. One test binary; modules by area.

mod cli;
mod destinations;
mod harness;
mod http;
mod instances;
mod limits;
mod nodes;
mod offline_tests;
mod onboarding;
mod panics;
mod runs;
mod secrets;
mod store;
mod trust;
mod upstream;
