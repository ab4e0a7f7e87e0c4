//! `duban migrate plan|apply`: moving running instances to another version
//! of their definition (docs/migration.md). The plan is printed per
//! instance — its steps, open tasks, deadlines and timers, variables and
//! called children, each kept, moved, added or removed — with the reasons
//! an instance is refused; `apply` carries it out or, when any instance is
//! refused, writes nothing.

use clap::{Args, Subcommand};
use duban_engine::migration::MigrationRequest;
use duban_engine::runtime::migrate::{Change, Plan};

/// What `migrate plan` and `migrate apply` take.
#[derive(Args, Clone)]
pub struct MigrateArgs {
    /// The process (its id).
    pub process: String,
    /// The version its instances run on now.
    #[arg(long)]
    pub from: u32,
    /// The version to move them to (deployed first, `duban deploy`).
    #[arg(long)]
    pub to: u32,
    /// An occupied step whose id changed: `OLD=NEW` (repeatable).
    #[arg(long = "map", value_name = "OLD=NEW")]
    pub map: Vec<String>,
    /// Only these instances (comma-separated ids); default every running
    /// or stuck instance on `--from`.
    #[arg(long, value_delimiter = ',')]
    pub instances: Option<Vec<String>>,
    /// Count the deadlines of open tasks and waits again under the target's
    /// periods (default: deadlines already counted keep their dates).
    #[arg(long)]
    pub recount: bool,
    /// A value for a variable the target requires: `NAME=VALUE` (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `duban migrate …`.
#[derive(Subcommand)]
pub enum MigrateCmd {
    /// Show, per instance, what migrating it would change, or why it is refused (writes nothing).
    Plan {
        #[command(flatten)]
        args: MigrateArgs,
    },
    /// Carry the plan out, one instance per transaction; refused as a whole when any instance is.
    Apply {
        #[command(flatten)]
        args: MigrateArgs,
        /// Who migrates (the history names them).
        #[arg(long = "as", default_value = "admin")]
        actor: String,
    },
}

/// The request the arguments make, or the exit code of a malformed one.
pub fn request(a: &MigrateArgs) -> Result<MigrationRequest, u8> {
    let pair = |what: &str, s: &String| match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => {
            errln!(
                "duban: bad {what} `{s}`: write {}",
                if what == "--map" {
                    "OLD=NEW"
                } else {
                    "NAME=VALUE"
                }
            );
            Err(crate::exit::USAGE)
        }
    };
    Ok(MigrationRequest {
        process: a.process.clone(),
        from: a.from,
        to: a.to,
        map: a
            .map
            .iter()
            .map(|m| pair("--map", m))
            .collect::<Result<_, _>>()?,
        recount: a.recount,
        variables: duban_engine::service::Values::Text(
            a.vars
                .iter()
                .map(|v| pair("--var", v))
                .collect::<Result<_, _>>()?,
        ),
        instances: a.instances.clone(),
    })
}

/// Prints plans as text.
pub fn print(plans: &[Plan]) {
    for p in plans {
        let verdict = if p.ok() { "can be migrated" } else { "REFUSED" };
        outln!(
            "instance {} ({} v{} → v{}): {verdict}",
            p.instance,
            p.process,
            p.from,
            p.to
        );
        for r in &p.refusals {
            outln!("  refused: {r}");
        }
        let group = |label: &str, changes: &[Change]| {
            for c in changes {
                outln!("  {label:<8} {:<9} {}", c.what, c.detail);
            }
        };
        group("step", &p.steps);
        group("task", &p.tasks);
        group("timer", &p.timers);
        group("variable", &p.variables);
        group("child", &p.children);
    }
    let refused = plans.iter().filter(|p| !p.ok()).count();
    outln!(
        "{} instance(s): {} can be migrated, {refused} refused",
        plans.len(),
        plans.len() - refused
    );
}
