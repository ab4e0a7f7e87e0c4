//! Validation time against definition size, measured (never asserted):
//! issue 12, finding 10 found it growing far faster than the definition.
//!
//! `cargo bench -p duban-core --bench validate` loads generated definitions
//! of N steps (`DUBAN_BENCH_SIZES`, comma-separated, default
//! `1000,4000,20000`) in three shapes: `chain`, a plain chain of tasks;
//! `mixed`, a chain mixing every step kind but calls and messages
//! (decisions, parallel splits and joins, notices, timers, deadlines with
//! expiry); and `broken`, about two diagnostics a step, since a file with
//! many problems must be quick to report too. The valid shapes are loaded
//! with the full checks (`deploy`) and as a stored definition is
//! (`deployed`, [`LoadContext::deployed`]). Each figure is the best of
//! `DUBAN_BENCH_RUNS` loads (default 3), with its ratio to the smallest N:
//! close to N's own ratio when validation is linear. Nothing fails on a
//! slow machine. `DUBAN_BENCH_ONLY=chain/deploy,mixed/deployed` runs only
//! those; `DUBAN_BENCH_WRITE=DIR` also writes each text to
//! `DIR/SHAPE_N.yaml` (to time the CLI on a deployed `chain_4000.yaml`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use duban_core::definition::{load_str, LoadContext};

/// The sections every generated definition shares: roles (those of
/// `tests/data/directory.yaml`, so a written one can be deployed and run),
/// variables and inline templates the steps refer to.
const HEADER: &str = "id: big\nversion: 1\nname: 大流程\n\
roles:\n  supervision_office: 监督机构\n  office_head: 负责人\n\
variables:\n  rounds: { type: int, default: 0 }\n  report: { type: text }\n  \
flag: { type: bool, default: false }\n  agency: { type: agency }\n\
templates:\n  notice: { subject: 通知, body: \"{{instance.id}} {{report}}\" }\n  \
escalation: { subject: 逾期, body: \"{{task.name}}\" }\n";

/// A chain of `n` tasks, each with a deadline, leading to one end.
fn chain(n: usize) -> String {
    let mut t = String::from(HEADER);
    t.push_str("start: s0\nsteps:\n");
    for i in 0..n - 1 {
        let next = if i + 2 == n {
            "done".to_string()
        } else {
            format!("s{}", i + 1)
        };
        write!(
            t,
            "  s{i}:\n    kind: task\n    name: 第{i}步\n    assignee: {{ role: supervision_office }}\n    \
             deadline: {{ period: 5个工作日, remind: [1 working day] }}\n    outcomes:\n      \
             ok:\n        label: 完成\n        fields: [report]\n        next: {next}\n"
        )
        .unwrap();
    }
    t.push_str("  done: { kind: end, name: 结束, result: done }\n");
    t
}

/// A chain of blocks of eight steps, every kind but `call` and
/// `wait_message`: task (with expiry), decision, notice, parallel split
/// with two branch tasks and their join, timer. About `n` steps in all.
fn mixed(n: usize) -> String {
    let mut t = String::from(HEADER);
    t.push_str("start: t0\nsteps:\n");
    let blocks = n.div_ceil(8);
    for b in 0..blocks {
        let next = if b + 1 == blocks {
            "done".to_string()
        } else {
            format!("t{}", b + 1)
        };
        write!(
            t,
            "  t{b}:\n    kind: task\n    name: 审查{b}\n    assignee: {{ role: supervision_office }}\n    \
             deadline:\n      period: 10个工作日\n      on_expiry: {{ goto: d{b}, notify: [office_head], template: escalation }}\n    \
             outcomes:\n      ok:\n        label: 通过\n        fields: [report]\n        \
             set: {{ rounds: rounds + 1 }}\n        next: d{b}\n      \
             back:\n        label: 退回\n        next: n{b}\n\
             \x20 d{b}:\n    kind: decision\n    name: 判断{b}\n    branches:\n      \
             - when: rounds > 3 && flag\n        goto: n{b}\n    default: p{b}\n\
             \x20 n{b}:\n    kind: notice\n    name: 通知{b}\n    to: {{ variable: agency }}\n    \
             template: notice\n    deadline: {{ period: 30日, from: receipt }}\n    \
             outcomes:\n      replied:\n        label: 已回复\n        next: p{b}\n\
             \x20 p{b}:\n    kind: parallel\n    name: 分送{b}\n    branches: [a{b}, b{b}]\n    join: j{b}\n\
             \x20 a{b}:\n    kind: task\n    name: 甲{b}\n    assignee: {{ role: supervision_office }}\n    \
             outcomes: {{ ok: {{ label: 完成, next: j{b} }} }}\n\
             \x20 b{b}:\n    kind: task\n    name: 乙{b}\n    assignee: {{ role: office_head }}\n    \
             outcomes: {{ ok: {{ label: 完成, next: j{b} }} }}\n\
             \x20 j{b}:\n    kind: join\n    name: 汇总{b}\n    next: w{b}\n\
             \x20 w{b}:\n    kind: wait_timer\n    name: 等待{b}\n    timer: {{ period: 1日 }}\n    next: {next}\n"
        )
        .unwrap();
    }
    t.push_str("  done: { kind: end, name: 结束, result: done }\n");
    t
}

/// A chain of `n` tasks with errors throughout, the file an administrator
/// checks while writing: the start is the end (every task unreachable),
/// every other task has a bad period and every third an unknown key (which
/// hides the rest of its step). About two diagnostics a step, each located
/// in the document.
fn broken(n: usize) -> String {
    let mut t = String::from(HEADER);
    t.push_str("start: done\nsteps:\n");
    for i in 0..n - 1 {
        let period = if i % 2 == 0 {
            "5个工作日"
        } else {
            "5 fortnights"
        };
        let typo = if i % 3 == 0 { "nxt: x\n        " } else { "" };
        write!(
            t,
            "  s{i}:\n    kind: task\n    name: 第{i}步\n    assignee: {{ role: supervision_office }}\n    \
             deadline: {{ period: {period} }}\n    outcomes:\n      \
             ok:\n        label: 完成\n        {typo}next: s{}\n",
            i + 1
        )
        .unwrap();
    }
    t.push_str("  done: { kind: end, name: 结束, result: done }\n");
    t
}

/// The best of `runs` loads of `text`, and how many diagnostics it has
/// (none for a shape meant to be valid: anything else is a broken generator).
fn time(text: &str, deployed: bool, runs: usize, valid: bool) -> (Duration, usize) {
    let ctx = LoadContext {
        deployed,
        ..Default::default()
    };
    let mut best = Duration::MAX;
    let mut count = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let def = load_str("big.yaml", text, &ctx);
        best = best.min(t0.elapsed());
        count = match def {
            Ok(_) => 0,
            Err(d) if valid => panic!(
                "the generated definition is invalid: {:?}",
                &d[..d.len().min(3)]
            ),
            Err(d) => d.len(),
        };
    }
    (best, count)
}

type Shape = (&'static str, fn(usize) -> String, bool);

fn main() {
    // `cargo test --benches` runs this without `--bench`: once, small.
    let benching = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("DUBAN_BENCH_SIZES") {
        Ok(s) => s
            .split(',')
            .map(|n| n.trim().parse().expect("a size"))
            .collect(),
        Err(_) if benching => vec![1000, 4000, 20000],
        Err(_) => vec![100],
    };
    let runs = match std::env::var("DUBAN_BENCH_RUNS") {
        Ok(r) => r.parse().expect("a number of runs"),
        Err(_) if benching => 3,
        Err(_) => 1,
    };
    let only = std::env::var("DUBAN_BENCH_ONLY").unwrap_or_default();
    let only: Vec<&str> = only.split(',').filter(|s| !s.is_empty()).collect();
    let write = std::env::var("DUBAN_BENCH_WRITE").ok();
    let shapes: [Shape; 3] = [
        ("chain", chain, true),
        ("mixed", mixed, true),
        ("broken", broken, false),
    ];
    for (shape, make, valid) in shapes {
        // A stored definition is a valid one: the broken shape is only
        // ever checked for a deploy.
        for deployed in [false, true].into_iter().filter(|d| valid || !d) {
            let mode = if deployed { "deployed" } else { "deploy" };
            if !only.is_empty() && !only.iter().any(|o| *o == format!("{shape}/{mode}")) {
                continue;
            }
            let mut first: Option<(usize, Duration)> = None;
            for &n in &sizes {
                let text = make(n);
                if let Some(dir) = &write {
                    let f = std::path::Path::new(dir).join(format!("{shape}_{n}.yaml"));
                    std::fs::write(&f, &text).expect("the folder of DUBAN_BENCH_WRITE");
                }
                let (took, diags) = time(&text, deployed, runs, valid);
                let ratio = first.map_or(String::new(), |(n0, t0)| {
                    format!(
                        "  x{:.1} for x{:.0} steps",
                        took.as_secs_f64() / t0.as_secs_f64(),
                        n as f64 / n0 as f64
                    )
                });
                first.get_or_insert((n, took));
                let diags = if valid {
                    String::new()
                } else {
                    format!(", {diags} diagnostics")
                };
                println!(
                    "{shape:6} {:8} N={n:6} ({:5} KiB{diags}): {:9.1} ms{ratio}",
                    mode,
                    text.len() / 1024,
                    took.as_secs_f64() * 1000.0
                );
            }
        }
    }
}
