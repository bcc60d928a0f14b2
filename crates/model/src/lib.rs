//! The hookflow workflow model.
//!
//! A workflow file goes through three shapes here:
//! 1. text → [`yaml::Yaml`], a tree with a position on every node;
//! 2. tree → [`def::WorkflowDef`], the serde types of the file format;
//! 3. definition → [`runtime::Workflow`], compiled: templates, expressions and
//!    paths parsed once, nodes in an arena addressed by index.
//!
//! [`load::load_dir`] does all three for a folder and reports every problem as
//! a [`diag::Diagnostic`] with file, line and column. [`schema`] prints the
//! JSON Schemas of workflow files and of test files ([`testfile`]).

pub mod compile;
pub mod def;
pub mod diag;
pub mod load;
pub mod path;
pub mod published;
pub mod recover;
pub mod request;
pub mod runtime;
pub mod schema;
pub mod scrub;
pub mod suggest;
pub mod template;
pub mod testfile;
pub mod testfile_out;
pub mod time;
pub mod units;
pub mod yaml;

pub use diag::{Diagnostic, Severity};
pub use load::{
    is_test_file, load_dir, load_path, load_source, Catalog, LoadOptions, LoadedFile, SecretPolicy,
};
pub use runtime::{Node, NodeId, NodeKind, Workflow};

#[cfg(test)]
mod validation_tests;
