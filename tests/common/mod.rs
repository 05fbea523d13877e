//! Helpers shared by the integration tests (each test binary uses some of them).
#![allow(dead_code)]

pub mod broker;
pub mod cli;
pub mod runs;
pub mod s3;
pub mod slack;
