//! The binary's standard output and error, written without panicking.
//!
//! `println!` panics when its reader has gone (`duban tasks | head`: the
//! pipe is closed after ten lines). A command then stops quietly with exit
//! code 0 — what it printed was all the reader wanted. `serve` never stops
//! for that: its lines are dropped and the engine runs on until a signal.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static SERVING: AtomicBool = AtomicBool::new(false);

/// From now on a closed stdout does not end the process (`serve`).
pub fn serving() {
    SERVING.store(true, Ordering::Relaxed);
}

/// Writes to stdout; on a closed pipe, exits quietly unless serving.
pub fn stdout(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    let result = out.write_fmt(args).and_then(|()| out.flush());
    if let Err(e) = result {
        if e.kind() == std::io::ErrorKind::BrokenPipe && !SERVING.load(Ordering::Relaxed) {
            std::process::exit(0);
        }
    }
}

/// Writes to stderr; an error is dropped (there is nowhere left to say it).
pub fn stderr(args: std::fmt::Arguments) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file
/// beside it, synced, then renamed over it (a full disk or a crash leaves
/// the old file or none, never half a PDF).
pub fn write_whole(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut f = tempfile::NamedTempFile::new_in(dir)?;
    f.write_all(bytes)?;
    f.as_file().sync_all()?;
    f.persist(path).map_err(|e| e.error)?;
    Ok(())
}
