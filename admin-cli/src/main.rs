//! `duban`, the admin CLI: validate, draw, simulate and deploy process
//! definitions; start, drive, inspect, repair (`set-var`, `retry`) and
//! serve their instances; ask the legal-time calendar what a period yields.
//!
//! A thin layer over `duban-engine`: each subcommand parses its arguments,
//! calls the library, and prints plain text or JSON. Exit codes are the
//! same for every subcommand (see `--help`).

/// `println!` that never panics when the reader has gone: a closed pipe
/// (`duban deadline … | head`) ends the command quietly, as for any Unix
/// tool; under `serve` the line is dropped and the engine runs on.
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::output::stdout(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `print!`, as [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {
        $crate::output::stdout(format_args!($($t)*))
    };
}

/// `eprintln!` that never panics: a message to a closed stderr is dropped
/// (`serve … 2>&1 | head` must still stop on SIGTERM).
macro_rules! errln {
    ($($t:tt)*) => {
        $crate::output::stderr(format_args!("{}\n", format_args!($($t)*)))
    };
}

mod output;

mod calendar;
mod config;
mod demo;
mod directory;
mod instances;
mod metrics;
mod migrate;
mod schema;
mod serve;
mod timeline;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, documented in `--help`.
pub mod exit {
    /// Everything checked out.
    pub const OK: u8 = 0;
    /// The input was read but is invalid (or a check failed).
    pub const INVALID: u8 = 1;
    /// The command line itself was wrong, or an input could not be read.
    pub const USAGE: u8 = 2;
}

#[derive(Parser)]
#[command(
    name = "duban",
    version,
    about = "duban (督办): legal deadlines of administrative law-enforcement supervision, as executable YAML processes",
    after_help = "Exit codes: 0 success; 1 invalid input or a refused operation (the message says why; nothing was written); 2 usage error or unreadable input.\n\nEnvironment: DUBAN_HOME (the base folder, default the current one), DUBAN_DB (store, default HOME/duban.db), DUBAN_CALENDAR_DIR (installed year schedules, default HOME/calendars), DUBAN_CONFIG (default HOME/duban.toml)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    db: instances::DbArgs,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Report every missing or wrong setting, naming its key; exit 1 if `serve` would refuse it.
    Check {
        /// The configuration file (default: HOME/duban.toml if it exists).
        #[arg(long, env = "DUBAN_CONFIG")]
        config: Option<PathBuf>,
        /// The process library whose SMS templates need gateway template codes (default HOME/processes).
        #[arg(long)]
        processes: Option<PathBuf>,
        /// Print the problems as a JSON array.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Check process definitions and report every problem with file:line:column.
    Validate {
        /// Definition files or folders of definitions (`processes/`).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the diagnostics as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Print a process as a Mermaid flowchart, with deadlines and escalations on the edges.
    Graph {
        /// One definition file.
        file: PathBuf,
    },
    /// Compute the last day and cut-off of a legal period.
    Deadline {
        /// A date (2025-09-26) or an RFC 3339 instant (2025-09-26T15:00:00+08:00).
        start: String,
        /// A period: `5 working days`, `5个工作日`, `30日`, `1个月`, `3年`, `48小时`, …
        period: String,
        /// Count the start day as the first day.
        #[arg(long)]
        include_start_day: bool,
        /// Business-hours cut-off on the last day (HH:MM) instead of 24:00.
        #[arg(long, value_name = "HH:MM")]
        cutoff: Option<String>,
        /// A minimum ("at least", 不少于) instead of a deadline ("within", …内).
        #[arg(long)]
        at_least: bool,
        /// End on the corresponding day even when it is a rest day: a term of
        /// office or a bar, which is no time to act in (the default extends the
        /// last day to the next working day, 民法典 第二百零三条).
        #[arg(long)]
        no_extension: bool,
        /// Print a JSON object, with every day counted or passed over and why.
        #[arg(long)]
        json: bool,
    },
    /// Show or install official holiday schedules.
    Calendar {
        #[command(subcommand)]
        command: calendar::CalendarCommand,
    },
    /// Run the engine: timers, reminders, escalations and recurring starts, until SIGINT/SIGTERM.
    Serve {
        /// The process library, deployed on start (new versions only;
        /// default HOME/processes). Serve refuses to start when neither it
        /// nor the store holds a definition.
        #[arg(long)]
        processes: Option<PathBuf>,
        /// Look for new timers at least this often (other processes may add them).
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        /// Timers claimed per round trip.
        #[arg(long, default_value_t = 200)]
        batch: u32,
        /// On SIGTERM or Ctrl-C, how long work in flight may finish before
        /// it is dropped and its claims are given back.
        #[arg(long, default_value_t = 10)]
        grace_secs: u64,
        /// The configuration file (default: HOME/duban.toml if it exists).
        #[arg(long, env = "DUBAN_CONFIG")]
        config: Option<PathBuf>,
        /// An example district to look at: on an empty store, import
        /// demo/directory.yaml and start a few cases; without [portal], serve
        /// the answer pages on 127.0.0.1:8080; print where to look.
        #[arg(long)]
        demo: bool,
    },
    /// Check the configuration (duban.toml and the secrets in the environment).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run a scenario on a throwaway store with a virtual clock and check its expectations.
    Simulate {
        /// The scenario file (see docs/simulation.md).
        #[arg(long)]
        scenario: PathBuf,
        /// A definition file to run instead of the scenario's own.
        definition: Option<PathBuf>,
        /// A profile instead of the scenario's.
        #[arg(long)]
        profile: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also write the case file (案卷) of the scenario's instance, as PDF.
        #[arg(long)]
        case_file: Option<PathBuf>,
    },
    /// Print the JSON Schema of a kind of YAML file, for editors (schema/*.json).
    Schema {
        /// A process definition, a directory file or a scenario.
        #[arg(value_enum, default_value_t = schema::Kind::Process)]
        kind: schema::Kind,
    },
    #[command(flatten)]
    Engine(instances::Cmd),
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if matches!(cli.command, Command::Serve { .. }) {
        output::serving();
    }
    cli.db.resolve();
    let code = match cli.command {
        Command::Validate { paths, json } => validate::validate(&paths, json),
        Command::Graph { file } => validate::graph(&file),
        Command::Deadline {
            start,
            period,
            include_start_day,
            cutoff,
            at_least,
            no_extension,
            json,
        } => calendar::deadline(&calendar::DeadlineArgs {
            start,
            period,
            include_start_day,
            cutoff,
            at_least,
            no_extension,
            json,
            calendar_dir: cli.db.calendar_dir.clone(),
        }),
        Command::Calendar { command } => calendar::run(command, &cli.db),
        Command::Serve {
            processes,
            poll_ms,
            batch,
            grace_secs,
            config,
            demo,
        } => {
            let explicit = processes.is_some();
            let processes = cli.db.under_home(processes, "processes");
            let config = crate::config::Source::new(config, &cli.db);
            serve::serve(
                cli.db,
                serve::Library {
                    path: processes,
                    explicit,
                },
                poll_ms,
                batch,
                grace_secs,
                config,
                demo,
            )
        }
        Command::Config {
            command:
                ConfigCommand::Check {
                    config,
                    processes,
                    json,
                },
        } => {
            let processes = cli.db.under_home(processes, "processes");
            config::check(&config::Source::new(config, &cli.db), &processes, json)
        }
        Command::Simulate {
            scenario,
            definition,
            profile,
            json,
            case_file,
        } => {
            if case_file.is_some() {
                config::fonts_from_home(&cli.db);
            }
            serve::simulate(
                scenario,
                definition,
                profile,
                json,
                case_file,
                &cli.db.calendar_dir,
            )
        }
        Command::Schema { kind } => schema::print(kind),
        Command::Engine(cmd) => instances::run(cmd, cli.db),
    };
    ExitCode::from(code)
}
