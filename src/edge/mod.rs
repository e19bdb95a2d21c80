//! The Fastly Compute glue: everything here calls Compute hostcalls and is tested under
//! Viceroy (`tests/viceroy.rs`); the decisions themselves live in the library.

pub mod config;
pub mod model;
pub mod origin;
pub mod responses;
pub mod snapshot;
