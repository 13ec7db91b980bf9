//! The benchmark commands keep working (tiny sizes; the figures themselves are in
//! BENCHMARKS.md, never asserted here).

use std::process::Command;

use crate::helpers::apache_kafka_bootstrap;

fn bench(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.md");
    let output = Command::new(env!("CARGO_BIN_EXE_cassa"))
        .arg("bench")
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("CASSA_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "bench {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = std::fs::read_to_string(&out).unwrap();
    assert!(table.contains(args[0]), "markdown row written: {table}");
    stdout
}

#[test]
fn bench_actors_prints_its_figures() {
    let figures = bench(&["actors", "--payments", "300"]);
    for key in [
        "open_payments=300",
        "bytes_per_payment=",
        "spawn_per_sec=",
        "timers_fired=300",
        "timer_lag_p99_ms=",
    ] {
        assert!(figures.contains(key), "{key} missing in {figures}");
    }
}

#[test]
fn bench_create_prints_its_figures_on_both_brokers() {
    let embedded = bench(&["create", "--concurrency", "2", "--seconds", "1"]);
    let apache = bench(&[
        "create",
        "--concurrency",
        "2",
        "--seconds",
        "1",
        "--kafka-brokers",
        &apache_kafka_bootstrap(),
    ]);
    for (figures, broker) in [(embedded, "broker=embedded"), (apache, "broker=apache")] {
        for key in [
            broker,
            "creates_per_sec=",
            "create_p99_ms=",
            "event_latency_p50_ms=",
            "event_latency_p99_ms=",
            "raw_insert_per_sec=",
            "ratio_vs_raw_insert=",
        ] {
            assert!(figures.contains(key), "{key} missing in {figures}");
        }
        // Every create's event reached the topic: a latency of 0 would mean none did.
        assert!(
            !figures.contains("event_latency_p50_ms=0.0"),
            "no event seen: {figures}"
        );
    }
}

#[test]
fn bench_recovery_prints_its_figures() {
    let figures = bench(&["recovery", "--payments", "200"]);
    for key in [
        "open_payments=200",
        "serving_http_after_s=",
        "all_rearmed_after_s=",
        "rss_bytes=",
        "peak_rss_bytes=",
        "peak_intermediary_calls_per_sec=",
        "intermediary_rate_limit_per_sec=50",
    ] {
        assert!(figures.contains(key), "{key} missing in {figures}");
    }
}

#[test]
fn bench_dispatch_prints_its_figures_on_both_brokers() {
    let embedded = bench(&[
        "dispatch",
        "--events",
        "50",
        "--concurrency",
        "2",
        "--baseline-seconds",
        "1",
    ]);
    let apache = bench(&[
        "dispatch",
        "--events",
        "50",
        "--concurrency",
        "2",
        "--baseline-seconds",
        "1",
        "--kafka-brokers",
        &apache_kafka_bootstrap(),
    ]);
    for (figures, broker) in [(embedded, "broker=embedded"), (apache, "broker=apache")] {
        for key in [
            broker,
            "events=50",
            "applications_per_sec=",
            "raw_insert_per_sec=",
            "ratio_vs_raw_insert=",
        ] {
            assert!(figures.contains(key), "{key} missing in {figures}");
        }
    }
}
