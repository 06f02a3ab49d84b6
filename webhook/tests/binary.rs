//! The `fluxfence-webhook` binary itself: what it writes where.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Pki, write_volume};

#[test]
fn text_logs_into_a_file_carry_no_colour_codes() {
    let pki = Pki::new("test CA");
    let tmp = tempfile::tempdir().unwrap();
    let tls = tmp.path().join("tls");
    let pair = pki.server("webhook");
    write_volume(
        &tls,
        "1",
        &[
            ("tls.crt", pair.cert_pem.as_bytes()),
            ("tls.key", pair.key_pem.as_bytes()),
        ],
    );
    let log = tmp.path().join("webhook.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluxfence-webhook"))
        .arg("--listen=127.0.0.1:0")
        .arg(format!("--tls-cert-file={}", tls.join("tls.crt").display()))
        .arg(format!("--tls-key-file={}", tls.join("tls.key").display()))
        .arg("--log-format=text")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("fluxfence webhook serving") {
            break text;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the webhook exited with {status}:\n{text}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not serving after 20 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains(" INFO "), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a redirected log:\n{text:?}"
    );
}
