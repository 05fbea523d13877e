//! Helpers shared by the integration tests (each test binary uses some of them).
#![allow(dead_code)]

pub mod broker;
pub mod cli;
pub mod http;
pub mod runs;
pub mod s3;
pub mod slack;

use std::path::Path;

/// A test's temporary directory. It stays when the test fails (or when
/// `INFERWATCH_TEST_KEEP` is set), and the failure says where: the run logs and tables
/// inside explain what went wrong.
pub struct TestDir(Option<tempfile::TempDir>);

pub fn test_dir() -> TestDir {
    TestDir(Some(tempfile::tempdir().expect("a temporary directory")))
}

impl TestDir {
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("until dropped").path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("INFERWATCH_TEST_KEEP").is_some() {
            if let Some(d) = self.0.take() {
                eprintln!("test directory kept: {}", d.keep().display());
            }
        }
    }
}
