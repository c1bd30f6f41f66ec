//! Keeps the benchmark harness working: a few seconds of each mode at a small load, asserting
//! only that it completes with no missing and no duplicated tick (never a timing).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

fn bench(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cronhook-bench"))
        .args(args)
        .args(["--check", "true", "--json", json.to_str().unwrap()])
        .env("CRONHOOK_BIN", cronhook_e2e::cronhook_bin().unwrap())
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn bench_smoke_embedded() {
    // spread phases here, aligned ones in the distributed smoke run: both load shapes stay working
    let r =
        bench(&["--mode", "embedded", "--schedules", "20", "--duration", "5s", "--warmup", "3s", "--phase", "spread"]);
    assert_eq!(r["phase"], "spread");
    assert_eq!(r["missing"], 0);
    assert_eq!(r["duplicate_sends"], 0);
    assert!(r["runs_found"].as_i64().unwrap() > 0);
}

#[test]
fn bench_smoke_distributed() {
    let r =
        bench(&["--mode", "distributed", "--schedules", "20", "--duration", "5s", "--warmup", "5s", "--workers", "1"]);
    assert_eq!(r["missing"], 0);
    assert_eq!(r["duplicate_sends"], 0);
    assert!(r["runs_found"].as_i64().unwrap() > 0);
}
