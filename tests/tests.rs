//! End-to-end tests of the `hookflow` binary. One test binary; modules by area.

mod cli;
mod harness;
mod http;
mod limits;
mod nodes;
mod runs;
mod store;
mod trust;
mod upstream;
