//! Differential test against an independent cron implementation: Python's croniter
//! (installed by scripts/test.sh into the test venv; CRONHOOK_TEST_PYTHON points at it).
//!
//! Thousands of random 5-field expressions in UTC, the next 8 fire times each. Known
//! semantic differences, kept out of the generated expressions:
//! - croniter's optional seconds field is the 6th (last) one; ours leads: 5 fields only here;
//! - `L`, `W` and `#` have different spellings and rules: not generated;
//! - croniter evaluates degenerate ranges (`5-5`, `5-5/2`) wrongly: written as `5` instead;
//! - day-of-month and day-of-week both restricted: both implementations fire when either
//!   matches (Vixie cron), so this case IS compared;
//! - a step day field starting with `*` (`*/5`) next to a restricted one: Vixie cron (and
//!   cronhook) AND the two, croniter ORs them: not generated here, unit-tested instead.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::io::Write;

use cronhook_core::Timestamp;
use cronhook_cron::CronExpr;

const CASES: usize = 3000;
const NEXT: usize = 8;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn field(r: &mut Rng, lo: u64, hi: u64) -> String {
    let v = |r: &mut Rng| lo + r.below(hi - lo + 1);
    match r.below(7) {
        0 | 1 => "*".into(),
        2 => v(r).to_string(),
        3 => range(v(r), v(r), None),
        4 => format!("*/{}", 1 + r.below((hi - lo).max(1))),
        5 => format!("{},{}", v(r), v(r)),
        _ => {
            let step = 1 + r.below(4);
            range(v(r), v(r), Some(step))
        }
    }
}

/// `a-b` or `a-b/s`; a degenerate range (`5-5`) is written as the single value, because
/// croniter evaluates `5-5` and `5-5/2` wrongly (it ignores the field, or treats it as `*`
/// while still applying the day-of-month/day-of-week OR rule).
fn range(a: u64, b: u64, step: Option<u64>) -> String {
    let (a, b) = (a.min(b), a.max(b));
    match (a == b, step) {
        (true, _) => a.to_string(),
        (false, None) => format!("{a}-{b}"),
        (false, Some(s)) => format!("{a}-{b}/{s}"),
    }
}

#[test]
fn agrees_with_croniter() {
    let python = cronhook_test_utils::server_env("CRONHOOK_TEST_PYTHON", "a Python with croniter");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases = Vec::new();
    while cases.len() < CASES {
        let expr = format!(
            "{} {} {} {} {}",
            field(&mut rng, 0, 59),
            field(&mut rng, 0, 23),
            field(&mut rng, 1, 28),
            field(&mut rng, 1, 12),
            field(&mut rng, 0, 6)
        );
        let start = 1_600_000_000 + rng.below(300_000_000) as i64;
        let f: Vec<&str> = expr.split(' ').collect();
        let (dom, dow) = (f[2], f[4]);
        // Known difference: cronhook follows Vixie cron (cronie), where a day field that
        // starts with `*` (e.g. `*/5`) makes the two day fields AND-ed; croniter ORs them
        // unless the field covers every day. Those combinations are tested in
        // crates/cron/src/cron_expr/tests.rs instead.
        let star_step = |x: &str| x.starts_with("*/");
        let differs = (star_step(dom) && dow != "*") || (star_step(dow) && dom != "*");
        if !differs && CronExpr::parse(&expr).is_ok() {
            cases.push((expr, start));
        }
    }
    let script = r#"
import sys
from datetime import datetime, timezone
from croniter import croniter
n = int(sys.argv[1])
for line in sys.stdin:
    expr, start = line.rstrip("\n").rsplit(" ", 1)
    it = croniter(expr, datetime.fromtimestamp(int(start), tz=timezone.utc))
    print(" ".join(str(int(it.get_next(float))) for _ in range(n)))
"#;
    let mut child = std::process::Command::new(&python)
        .args(["-c", script, &NEXT.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // feed stdin from a thread: python's answers fill the stdout pipe meanwhile
    let mut stdin = child.stdin.take().unwrap();
    let input: Vec<String> = cases.iter().map(|(e, s)| format!("{e} {s}")).collect();
    let feeder = std::thread::spawn(move || {
        for l in input {
            writeln!(stdin, "{l}").unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success(), "croniter failed");
    let theirs: Vec<Vec<i64>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(|v| v.parse::<i64>().unwrap()).collect())
        .collect();
    assert_eq!(theirs.len(), cases.len());
    let mut mismatches = Vec::new();
    for ((expr, start), want) in cases.iter().zip(&theirs) {
        let c = CronExpr::parse(expr).unwrap();
        let mut t = Timestamp::from_millis(start * 1000);
        let mut ours = Vec::new();
        for _ in 0..NEXT {
            t = c.next_after(t).unwrap();
            ours.push(t.as_millis() / 1000);
        }
        if &ours != want {
            mismatches.push(format!("{expr} from {start}: ours {ours:?} croniter {want:?}"));
        }
    }
    println!("{} expressions x {NEXT} fire times compared with croniter, {} mismatches", cases.len(), mismatches.len());
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first: {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}
