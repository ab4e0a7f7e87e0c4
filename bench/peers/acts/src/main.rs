//! acts peer: N two-task lifecycles, in memory (acts' default MemoryStore), one caller.
//!
//! Prints one line:
//!   peer=acts version=<v> lifecycles=<N> seconds=<s> rate=<per second>
//!
//! The YAML model is parsed and deployed ONCE, before timing. Each lifecycle
//! starts a NEW process (its own pid), waits for the engine's irq message of
//! task A and completes it with `a_done=true`, then the same for task B with
//! `b_done=true`, then waits for the engine's workflow-completed event for that
//! pid and asserts the process ended with both variables in its outputs.
//!
//! acts is message-driven: the engine runs a process on its own tokio tasks and
//! tells the client about waiting user tasks (irq acts) on a channel. The
//! channel callbacks here only forward the messages to the single caller loop.
//!
//! The tokio runtime is single-threaded (`current_thread`) by default, like the
//! Python and Node peers; `PEER_ACTS_RUNTIME=multi` uses the multi-threaded one.

use acts::{Engine, MessageState, Principal, Vars, Workflow};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const VERSION: &str = env!("ACTS_VERSION");
const MODEL: &str = include_str!("../two_tasks.yml");
/// A lifecycle step that takes this long means the engine is stuck.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
enum Ev {
    /// An irq act (a user task) is waiting to be completed.
    Irq { pid: String, tid: String, name: String },
    /// The workflow ended.
    Done { pid: String, state: MessageState, outputs: Vars },
    /// The workflow failed.
    Error { pid: String, detail: String },
}

fn fail(msg: String) -> ! {
    eprintln!("acts peer failed: {msg}");
    std::process::exit(1);
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Ev>, what: &str) -> Ev {
    match tokio::time::timeout(STEP_TIMEOUT, rx.recv()).await {
        Ok(Some(Ev::Error { pid, detail })) => fail(format!("process {pid} errored: {detail}")),
        Ok(Some(ev)) => ev,
        Ok(None) => fail(format!("engine channel closed while waiting for {what}")),
        Err(_) => fail(format!("no {what} within {STEP_TIMEOUT:?}")),
    }
}

async fn complete_task(
    rx: &mut mpsc::UnboundedReceiver<Ev>,
    ex: &acts::Executor,
    want_pid: &str,
    want_name: &str,
    var: &str,
) {
    match next(rx, want_name).await {
        Ev::Irq { pid, tid, name } if pid == want_pid && name == want_name => {
            if let Err(e) = ex.act().complete(&pid, &tid, Vars::new().with(var, true)).await {
                fail(format!("complete {want_name} of {pid}: {e}"));
            }
        }
        other => fail(format!("expected irq '{want_name}' of {want_pid}, got {other:?}")),
    }
}

async fn bench(n: usize) {
    let engine = Engine::builder()
        .start()
        .await
        .unwrap_or_else(|e| fail(format!("engine start: {e}")));
    let ex = engine.executor(&Principal::unrestricted());

    // Parse and deploy the model once, before timing.
    let workflow = Workflow::from_yml(MODEL).unwrap_or_else(|e| fail(format!("model: {e}")));
    ex.model()
        .deploy(&workflow, None)
        .await
        .unwrap_or_else(|e| fail(format!("deploy: {e}")));

    let (tx, mut rx) = mpsc::unbounded_channel::<Ev>();
    let chan = engine.channel();
    let t = tx.clone();
    chan.on_message(move |e| {
        let t = t.clone();
        async move {
            if e.is_irq() && e.is_state(MessageState::Created) {
                let _ = t.send(Ev::Irq { pid: e.pid.clone(), tid: e.tid.clone(), name: e.name.clone() });
            }
        }
    });
    let t = tx.clone();
    chan.on_complete(move |e| {
        let t = t.clone();
        async move {
            let _ = t.send(Ev::Done { pid: e.pid.clone(), state: e.state, outputs: e.outputs.clone() });
        }
    });
    let t = tx;
    chan.on_error(move |e| {
        let t = t.clone();
        async move {
            let _ = t.send(Ev::Error { pid: e.pid.clone(), detail: format!("{:?}", e.outputs) });
        }
    });

    // PEER_PROGRESS=k prints the rate of every k lifecycles on stderr (diagnostics).
    let progress: usize = std::env::var("PEER_PROGRESS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let t0 = Instant::now();
    let mut lap = t0;
    for i in 0..n {
        if progress > 0 && i > 0 && i % progress == 0 {
            eprintln!("acts: lifecycles {}..{}: {:.0}/s", i - progress, i, progress as f64 / lap.elapsed().as_secs_f64());
            lap = Instant::now();
        }
        let pid = format!("lc{i}");
        let started = ex
            .proc()
            .start(&workflow.id, Vars::new().with("pid", pid.as_str()))
            .await
            .unwrap_or_else(|e| fail(format!("start {pid}: {e}")));
        if started != pid {
            fail(format!("started {started}, expected {pid}"));
        }
        complete_task(&mut rx, &ex, &pid, "task A", "a_done").await;
        complete_task(&mut rx, &ex, &pid, "task B", "b_done").await;
        match next(&mut rx, "workflow end").await {
            Ev::Done { pid: p, state, outputs } if p == pid => {
                if state != MessageState::Completed {
                    fail(format!("{pid} ended in state {state:?}, not completed"));
                }
                if outputs.get::<bool>("a_done") != Some(true) || outputs.get::<bool>("b_done") != Some(true) {
                    fail(format!("{pid} completed without a_done/b_done: {outputs:?}"));
                }
            }
            other => fail(format!("expected the end of {pid}, got {other:?}")),
        }
    }
    let secs = t0.elapsed().as_secs_f64();

    println!(
        "peer=acts version={VERSION} lifecycles={n} seconds={secs:.3} rate={}",
        (n as f64 / secs) as u64
    );
}

fn main() {
    let n: usize = match std::env::var("PEER_N") {
        Ok(v) => v.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| fail(format!("bad PEER_N: {v}"))),
        Err(_) => 2000,
    };
    let rt = match std::env::var("PEER_ACTS_RUNTIME").as_deref() {
        Ok("multi") => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        Ok("current") | Err(_) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Ok(other) => fail(format!("bad PEER_ACTS_RUNTIME: {other} (current|multi)")),
    }
    .unwrap_or_else(|e| fail(format!("tokio runtime: {e}")));
    rt.block_on(bench(n));
}
