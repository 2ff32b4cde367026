//! A test of this test binary run as a child process, to be killed (SIGKILL) mid-work.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs the test `test` of the current test binary in a child process, with `url` in its
/// environment as `env`, and returns the child once a line of its output ends with
/// `ready` (it panics if that takes over a minute).
pub(crate) fn spawn_until(test: &str, env: &str, url: &str, ready: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(env, url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (told, heard) = std::sync::mpsc::channel();
    let marker = ready.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if line.is_ok_and(|line| line.trim_end().ends_with(&marker)) {
                let _ = told.send(());
            }
        }
    });
    heard
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the child `{test}` never said `{ready}`"));
    child
}
