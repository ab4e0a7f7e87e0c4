//! `duban config check`: read `duban.toml` and the secrets in the
//! environment the way `serve` does, and report every problem by its key.

use std::path::{Path, PathBuf};

use duban_engine::definition::{self, Definition};
use duban_notifiers::config::{self, Loaded, ProcessEnv};

use crate::exit;

/// The file `serve` and `config check` read: the one given, else
/// `duban.toml` in the working directory if there is one.
pub fn path(given: Option<&Path>) -> (PathBuf, bool) {
    match given {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("duban.toml"), false),
    }
}

/// The valid definitions of the library at `processes` (none when absent).
fn library(processes: &Path) -> Vec<Definition> {
    if !processes.exists() {
        return Vec::new();
    }
    let files = definition::expand_paths(&[processes.to_path_buf()]).unwrap_or_default();
    definition::load_library(&files, &[])
        .definitions
        .into_values()
        .collect()
}

/// Loads the configuration; `definitions` are the processes whose SMS
/// templates need gateway template codes.
pub fn load(given: Option<&Path>, definitions: &[&Definition]) -> Loaded {
    let (path, required) = path(given);
    config::load(&path, required, &ProcessEnv, definitions)
}

/// `duban config check`: exit 0 when `serve` would accept the
/// configuration (warnings allowed), 1 listing the errors.
pub fn check(given: Option<&Path>, processes: &Path, json: bool) -> u8 {
    let (path, _) = path(given);
    let defs = library(processes);
    let refs: Vec<&Definition> = defs.iter().collect();
    let loaded = load(given, &refs);
    if json {
        let v: Vec<_> = loaded
            .problems
            .iter()
            .map(|p| {
                serde_json::json!({
                    "key": p.key,
                    "level": if p.warning { "warning" } else { "error" },
                    "message": p.message,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
    } else {
        for p in &loaded.problems {
            println!("{p}");
        }
    }
    match &loaded.config {
        Some(c) => {
            if !json {
                let file = c
                    .file
                    .as_ref()
                    .map_or("no file (defaults)".to_string(), |f| {
                        f.display().to_string()
                    });
                let email = c
                    .email
                    .as_ref()
                    .map_or("off".to_string(), |e| format!("{}:{}", e.host, e.port));
                let sms = match &c.sms {
                    Some(config::SmsSettings::Aliyun(_)) => "aliyun",
                    Some(config::SmsSettings::Webhook(_)) => "webhook",
                    None => "off",
                };
                println!(
                    "{file}: ok (email {email}, sms {sms}, outbox {} attempts)",
                    c.policy.max_attempts
                );
            }
            exit::OK
        }
        None => {
            if !json {
                let n = loaded.problems.iter().filter(|p| !p.warning).count();
                println!("{}: {n} error(s)", path.display());
            }
            exit::INVALID
        }
    }
}
