//! The commands that drive the engine and its store: deploy, start,
//! complete, receive, message, cancel, set-var, retry, the listings, the
//! timeline, the directory.
//!
//! Each opens the store named by `--db` (default `./duban.db`, SQLite),
//! performs one operation through `duban_engine::service::Engine`, and
//! prints text or JSON. This is the edge where the clock is read: `now` is
//! the system time, or `DUBAN_NOW` (RFC 3339) for tests and rehearsals.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use duban_engine::calendar::files;
use duban_engine::runtime::{values, InstanceState};
use duban_engine::service::{Engine, ServiceError};
use duban_engine::store::{OutboxStatus, SqlStore, TaskFilter};
use serde_json::{json, Value as Json};

use crate::exit;

/// Options every store command takes.
#[derive(Args, Clone)]
pub struct DbArgs {
    /// The base folder: `duban.db`, `processes/`, `calendars/` and
    /// `duban.toml` are found here unless named otherwise (default: the
    /// current folder).
    #[arg(long, env = "DUBAN_HOME", global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// The store: a SQLite file (default HOME/duban.db) or a postgres:// URL.
    #[arg(long = "db", env = "DUBAN_DB", global = true, value_name = "URL")]
    db_arg: Option<String>,
    /// Folder of installed year schedules (default HOME/calendars).
    #[arg(
        long = "calendar-dir",
        env = "DUBAN_CALENDAR_DIR",
        global = true,
        value_name = "DIR"
    )]
    calendar_dir_arg: Option<PathBuf>,
    /// The store, resolved against the home (see [`DbArgs::resolve`]).
    #[arg(skip)]
    pub db: String,
    /// The calendar folder, resolved against the home.
    #[arg(skip)]
    pub calendar_dir: PathBuf,
}

impl DbArgs {
    /// Fills `db` and `calendar_dir`: what was given, else the defaults
    /// under the home. Called once, right after the command line is parsed.
    pub fn resolve(&mut self) {
        let home = self.home_dir();
        self.db = self
            .db_arg
            .clone()
            .unwrap_or_else(|| home.join("duban.db").display().to_string());
        self.calendar_dir = self
            .calendar_dir_arg
            .clone()
            .unwrap_or_else(|| home.join("calendars"));
    }

    /// The home folder (`""`, the current folder, when none is given).
    pub fn home_dir(&self) -> PathBuf {
        self.home.clone().unwrap_or_default()
    }

    /// `name` under the home, unless `given`.
    pub fn under_home(&self, given: Option<PathBuf>, name: &str) -> PathBuf {
        given.unwrap_or_else(|| self.home_dir().join(name))
    }
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Validate definitions and store new versions (unchanged content is skipped).
    Deploy {
        /// Definition files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List deployed definitions.
    Definitions {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start an instance of a process.
    Start {
        /// The process id.
        process: String,
        /// The jurisdiction profile.
        #[arg(long)]
        profile: Option<String>,
        /// A variable, `name=value` (repeatable; lists comma-separated).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// A YAML or JSON file of variables (at most 1 MiB, 64 levels deep).
        #[arg(long)]
        vars_file: Option<PathBuf>,
        /// Who starts it.
        #[arg(long = "as", default_value = "admin")]
        actor: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List instances.
    Instances {
        /// running, completed, cancelled or stuck (a fault stopped a timer; see `duban retry`).
        #[arg(long, value_parser = ["running", "completed", "cancelled", "stuck"])]
        status: Option<String>,
        /// Only this process.
        #[arg(long)]
        process: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an instance's timeline: tasks, deadlines with their explanations, reminders, escalations.
    Show {
        /// The instance id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List open tasks.
    Tasks {
        /// Only those assigned to this person or agency.
        #[arg(long)]
        assignee: Option<String>,
        /// Only those assigned to holders of this role.
        #[arg(long)]
        role: Option<String>,
        /// Only those past their deadline.
        #[arg(long)]
        overdue: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Complete a task (or answer a notice) with an outcome.
    Complete {
        /// The task id (`INSTANCE.N`).
        task: String,
        /// The outcome.
        #[arg(long)]
        outcome: String,
        /// A form field, `name=value` (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Who completes it.
        #[arg(long = "as", required = true)]
        actor: String,
    },
    /// Record that a notice's recipient received it (starts `from: receipt` deadlines).
    Receive {
        /// The notice's task id.
        task: String,
        /// Who received it.
        #[arg(long = "as", required = true)]
        actor: String,
    },
    /// Request a recusal (回避) from a task: the person declares a
    /// conflict (`--as` themself), or a supervised party asks for it.
    Recuse {
        /// The task id.
        task: String,
        /// Who is to be recused.
        #[arg(long)]
        person: String,
        /// Why: the conflict, or the grounds of the request.
        #[arg(long)]
        reason: String,
        /// Who asks.
        #[arg(long = "as", required = true)]
        actor: String,
    },
    /// Decide a pending recusal (a holder of the step's `recusal.decided_by`).
    DecideRecusal {
        /// The task id.
        task: String,
        /// Whose recusal.
        #[arg(long)]
        person: String,
        /// Grant it: the person leaves the task.
        #[arg(long, conflicts_with = "refuse", required_unless_present = "refuse")]
        grant: bool,
        /// Refuse it: the person acts on the task again.
        #[arg(long)]
        refuse: bool,
        /// Who decides.
        #[arg(long = "as", required = true)]
        actor: String,
    },
    /// Deliver a message to the instances waiting for it.
    Message {
        /// The message name.
        name: String,
        /// The correlation key.
        #[arg(long)]
        key: String,
        /// A variable the message carries.
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
    },
    /// Cancel an instance.
    Cancel {
        /// The instance id.
        id: String,
        /// Why.
        #[arg(long, required = true)]
        reason: String,
        /// Who.
        #[arg(long = "as", default_value = "admin")]
        actor: String,
    },
    /// Set variables of an instance by hand (to repair its data, e.g. before `duban retry`).
    SetVar {
        /// The instance id.
        id: String,
        /// A variable, `name=value` (repeatable), typed by the instance's definition.
        #[arg(long = "var", value_name = "NAME=VALUE", required = true)]
        vars: Vec<String>,
        /// Who.
        #[arg(long = "as", default_value = "admin")]
        actor: String,
    },
    /// Give an open task to other people (its assignee left or is away):
    /// each must hold the step's role; the deadline stays; the history
    /// names who reassigned it and why, and the new assignees are told.
    Reassign {
        /// The task id (`duban tasks`).
        task: String,
        /// The person or people it goes to (comma-separated ids).
        #[arg(long, required = true, value_delimiter = ',')]
        to: Vec<String>,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Who.
        #[arg(long = "as", default_value = "admin")]
        actor: String,
    },
    /// Apply again the event that made an instance stuck (after fixing its cause).
    Retry {
        /// The instance id.
        id: String,
        /// Who.
        #[arg(long = "as", default_value = "admin")]
        actor: String,
    },
    /// The case file (案卷) of an instance as one PDF: cover, every action with who and when, every deadline, every document issued.
    CaseFile {
        /// The instance id.
        id: String,
        /// The PDF to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// The document-number series (发文字号) and the last number each gave, per year.
    Numbers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the SQLite store to FILE, also while `serve` runs (docs/upgrading.md).
    Backup {
        /// The new file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a backup and make it the SQLite store (`--db`); stop `serve` first.
    Restore {
        /// The backup file (`duban backup`).
        file: PathBuf,
        /// Replace an existing store.
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move running instances to another version of their definition (docs/migration.md).
    Migrate {
        #[command(subcommand)]
        cmd: crate::migrate::MigrateCmd,
    },
    /// Bearer tokens of the JSON API (`/api/v1`, docs/api.md).
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// The people and agencies of the directory.
    Directory {
        #[command(subcommand)]
        cmd: DirectoryCmd,
    },
    /// The outbox: notifications to send, sent, and dead.
    Outbox {
        #[command(subcommand)]
        cmd: Option<OutboxCmd>,
        /// pending, sent or dead.
        #[arg(long, value_parser = ["pending", "sent", "dead"])]
        status: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// How the notices of a period were answered, per agency (XT-15,
    /// XT-16): sent, answered, on time, overdue, escalated, average days to
    /// an answer, as of now; what a `report` step counts.
    Report {
        /// The period's first day (YYYY-MM-DD, Beijing time).
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Its last day, included.
        #[arg(long)]
        until: chrono::NaiveDate,
        /// Only instances of this process.
        #[arg(long)]
        process: Option<String>,
        /// Only notices of this step.
        #[arg(long)]
        step: Option<String>,
        /// Only this agency.
        #[arg(long)]
        agency: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Everything recorded about one person (or agency) across all
    /// processes (一人一档, RC-14): the history lines naming them, then the
    /// facts recorded about them (`record:`).
    History {
        /// The person's id.
        #[arg(long)]
        person: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a bearer token of the JSON API; it is printed once, and only
    /// its hash is kept.
    Create {
        /// The person it acts as (their tasks, completed in their name).
        #[arg(long, conflicts_with = "role", required_unless_present = "role")]
        person: Option<String>,
        /// The role whose holders' tasks it reads (it completes nothing).
        #[arg(long)]
        role: Option<String>,
        /// What it is for (which system uses it).
        #[arg(long)]
        note: Option<String>,
    },
    /// The tokens, without their secrets.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: refused from the next request on.
    Revoke {
        /// The token's id (its middle part, `dbn.ID.…`).
        id: String,
    },
}

#[derive(Subcommand)]
pub enum OutboxCmd {
    /// Send a dead row again (it becomes pending, with its attempts reset).
    Retry {
        /// The row id.
        id: i64,
    },
}

#[derive(Subcommand)]
pub enum DirectoryCmd {
    /// Add and update people and agencies from a YAML or CSV file, saying
    /// what is added and changed (docs/directory.md); nothing is imported
    /// from a file with errors.
    Import {
        /// The file (`.csv` for CSV, YAML otherwise).
        file: PathBuf,
        /// Make the file the whole directory: who it does not name is
        /// removed (their open tasks are listed, to be reassigned).
        #[arg(long)]
        replace: bool,
        /// Show what would change, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --replace: import a file with no people and no agencies, emptying the directory.
        #[arg(long)]
        allow_empty: bool,
    },
    /// List the people and agencies.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One person or agency, with the open tasks assigned to them.
    Show {
        /// The id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn now() -> DateTime<Utc> {
    std::env::var("DUBAN_NOW")
        .ok()
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
}

/// What went wrong, and the exit code it deserves.
pub fn fail(e: ServiceError) -> u8 {
    match &e {
        ServiceError::Invalid(diags) => {
            for d in diags {
                errln!("{d}\n");
            }
            errln!("duban: {e}");
        }
        _ => errln!("duban: {e}"),
    }
    match e {
        ServiceError::Io(_) => exit::USAGE,
        _ => exit::INVALID,
    }
}

/// The text of a `--vars-file`, read no further than
/// [`values::MAX_VARS_FILE`] (a pipe or `/dev/zero` included).
fn read_vars_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(values::MAX_VARS_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > values::MAX_VARS_FILE {
        return Err(std::io::Error::other(format!(
            "the file is larger than {} KiB; a variables file holds a few names and values",
            values::MAX_VARS_FILE / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("the file is not UTF-8 text"))
}

fn split_vars(vars: &[String]) -> Result<Vec<(String, String)>, u8> {
    vars.iter()
        .map(|v| match v.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => Ok((k.trim().to_string(), val.to_string())),
            _ => {
                errln!("duban: bad --var `{v}`: write NAME=VALUE");
                Err(exit::USAGE)
            }
        })
        .collect()
}

fn backup_line(what: &str, i: &duban_engine::store::backup::BackupInfo) -> String {
    format!(
        "{what} {}: {} bytes, schema {}, {} instance(s) ({} running or stuck), {} pending timer(s), {} history line(s); integrity checked",
        i.file.display(),
        i.bytes,
        i.schema,
        i.instances,
        i.running,
        i.timers,
        i.history
    )
}

/// `duban restore`: checks the backup, then puts it in place of the store.
fn restore(file: &std::path::Path, force: bool, json: bool, db: &DbArgs) -> u8 {
    let (_, backend) = duban_engine::store::sql::parse_url(&db.db);
    if backend != duban_engine::store::sql::Backend::Sqlite {
        errln!("duban: a PostgreSQL store is restored with pg_restore (docs/upgrading.md)");
        return exit::USAGE;
    }
    let target = PathBuf::from(
        db.db
            .strip_prefix("sqlite://")
            .or(db.db.strip_prefix("sqlite:"))
            .unwrap_or(&db.db),
    );
    let target = PathBuf::from(
        target
            .display()
            .to_string()
            .split('?')
            .next()
            .unwrap_or_default(),
    );
    match duban_engine::store::backup::restore(file, &target, force) {
        Ok(info) => {
            if json {
                print_json(&info);
            } else {
                outln!("{}", backup_line("restored into", &info));
            }
            exit::OK
        }
        Err(e) => {
            errln!("duban: {e}");
            exit::INVALID
        }
    }
}

async fn open(db: &DbArgs) -> Result<Engine<SqlStore>, u8> {
    let calendar = files::load(&db.calendar_dir).map_err(|e| {
        errln!("duban: the calendar cannot be loaded: {e}");
        exit::INVALID
    })?;
    let store = SqlStore::open(&db.db).await.map_err(|e| {
        errln!("duban: {}", crate::serve::redact_in(&e.to_string(), &db.db));
        exit::USAGE
    })?;
    Engine::new(store, calendar).await.map_err(fail)
}

/// A task as `duban tasks` shows it: what process and step, which case,
/// who must act (names), by when (Beijing time), and what they may answer
/// with the fields each answer requires (`duban tasks --json`, docs/operations.md).
/// `def` and `state` are those of the task's instance, loaded once by the
/// caller for all its tasks.
fn task_listing(
    def: &duban_engine::definition::Definition,
    state: &InstanceState,
    dir: &duban_engine::runtime::directory::MemoryDirectory,
    t: &duban_engine::store::TaskRow,
) -> Json {
    let name_of = |id: &str| name_in(dir, id);
    let step = def.steps.get(&t.step);
    let outcomes = match step.map(|s| &s.kind) {
        Some(
            duban_engine::definition::StepKind::Task { outcomes, .. }
            | duban_engine::definition::StepKind::Notice { outcomes, .. },
        ) => outcomes
            .iter()
            .map(|(id, o)| {
                json!({
                    "id": id,
                    "label": o.label,
                    "fields": o.fields,
                    "optional_fields": o.optional_fields,
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    let case = case_of(def, state);
    let beijing = |d: &DateTime<Utc>| {
        d.with_timezone(&duban_engine::calendar::LEGAL_TZ)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    };
    json!({
        "id": t.id,
        "instance": t.instance,
        "process": def.id,
        "process_name": def.name,
        "step": t.step,
        "step_name": step.map(|s| s.name.clone()).unwrap_or_default(),
        "kind": t.kind,
        "case": case,
        "assignees": t.assignees.iter().map(|a| json!({ "id": a, "name": name_of(a) })).collect::<Vec<_>>(),
        "opened_at": beijing(&t.opened_at),
        "due": t.due.as_ref().map(beijing),
        "last_day": t.last_day,
        "outcomes": outcomes,
    })
}

/// The name of person or agency `id` in `dir` (the id when it is not there).
fn name_in(dir: &duban_engine::runtime::directory::MemoryDirectory, id: &str) -> String {
    dir.people
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.name.clone())
        .or_else(|| {
            dir.agencies
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.name.clone())
        })
        .unwrap_or_else(|| id.to_string())
}

/// The case an instance is: its `case_no` when the process has one, else
/// the first required text it was started with; `null` when neither.
fn case_of(def: &duban_engine::definition::Definition, state: &InstanceState) -> Json {
    def.variables
        .get("case_no")
        .map(|_| "case_no")
        .or_else(|| {
            def.variables
                .iter()
                .find(|(_, v)| v.required && v.ty.to_string() == "string")
                .map(|(k, _)| k.as_str())
        })
        .and_then(|k| {
            let v = state.variables.get(k)?.as_str()?.to_string();
            let label = def.variables[k]
                .label
                .clone()
                .unwrap_or_else(|| k.to_string());
            Some(json!({ "variable": k, "label": label, "value": v }))
        })
        .unwrap_or(Json::Null)
}

/// The text form of [`task_listing`].
fn print_task(t: &Json) {
    let s = |v: &Json| v.as_str().unwrap_or("").to_string();
    outln!(
        "{}  {} · {}（{}，{}）",
        s(&t["id"]),
        s(&t["process_name"]),
        s(&t["step_name"]),
        s(&t["step"]),
        s(&t["kind"])
    );
    let mut line = Vec::new();
    if let Some(c) = t["case"].as_object() {
        line.push(format!("{}：{}", s(&c["label"]), s(&c["value"])));
    }
    let names: Vec<String> = t["assignees"]
        .as_array()
        .map(|a| a.iter().map(|p| s(&p["name"])).collect())
        .unwrap_or_default();
    line.push(format!("办理：{}", names.join("、")));
    match t["last_day"].as_str() {
        Some(d) => line.push(format!("期限：{d}（截止 {}）", s(&t["due"]))),
        None => line.push("期限：无".to_string()),
    }
    outln!("    {}", line.join("  "));
    for o in t["outcomes"].as_array().into_iter().flatten() {
        let fields: Vec<String> = o["fields"]
            .as_array()
            .map(|f| f.iter().map(&s).collect())
            .unwrap_or_default();
        outln!(
            "    → {}（{}）{}",
            s(&o["id"]),
            s(&o["label"]),
            if fields.is_empty() {
                String::new()
            } else {
                format!("  必填：{}", fields.join(", "))
            }
        );
    }
}

/// Prints `v` as JSON, every instant in one format: RFC 3339 in Beijing
/// time (`2025-10-11T00:00:00+08:00`), as the text output shows them —
/// the store keeps UTC, which mixed `…Z` and `+08:00` in one answer.
fn print_json(v: &impl serde::Serialize) {
    let mut v = serde_json::to_value(v).expect("serialises");
    beijing_times(&mut v);
    outln!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
}

fn beijing_times(v: &mut Json) {
    match v {
        Json::String(s) if s.ends_with('Z') && s.len() >= 20 => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                *s = t
                    .with_timezone(&duban_engine::calendar::LEGAL_TZ)
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
            }
        }
        Json::Array(a) => a.iter_mut().for_each(beijing_times),
        Json::Object(o) => o.values_mut().for_each(beijing_times),
        _ => {}
    }
}

fn open_tasks_line(s: &InstanceState) -> String {
    let tasks: Vec<String> = s
        .open_tasks()
        .map(|t| {
            let due = t
                .deadline
                .as_ref()
                .map(|d| format!(", due {}", d.last_day))
                .unwrap_or_default();
            format!(
                "{} {}{} → {}{due}",
                t.id,
                t.step,
                crate::timeline::item_label(t),
                t.assignees.join(",")
            )
        })
        .collect();
    if tasks.is_empty() {
        format!("status: {}", s.status.name())
    } else {
        format!("open: {}", tasks.join("; "))
    }
}

pub fn run(cmd: Cmd, db: DbArgs) -> u8 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Cmd::Restore { file, force, json } = &cmd {
        return restore(file, *force, *json, &db);
    }
    rt.block_on(async move {
        match run_async(cmd, &db).await {
            Ok(()) => exit::OK,
            Err(code) => code,
        }
    })
}

async fn run_async(cmd: Cmd, db: &DbArgs) -> Result<(), u8> {
    let engine = open(db).await?;
    let now = now();
    match cmd {
        Cmd::Deploy { paths, json } => {
            let reports = engine.deploy(&paths, now).await.map_err(fail)?;
            if json {
                print_json(&reports);
            } else {
                for r in reports {
                    let what = match r.result {
                        duban_engine::store::Deployed::New => "deployed",
                        duban_engine::store::Deployed::Unchanged => "unchanged",
                    };
                    outln!("{what} {} v{}", r.id, r.version);
                }
            }
        }
        Cmd::Definitions { json } => {
            let defs = engine.definitions().await.map_err(fail)?;
            if json {
                print_json(&defs);
            } else {
                for d in defs {
                    outln!(
                        "{:<24} v{:<3} {}  {}",
                        d.id,
                        d.version,
                        d.deployed_at.format("%Y-%m-%d %H:%M"),
                        d.file
                    );
                }
            }
        }
        Cmd::Start {
            process,
            profile,
            vars,
            vars_file,
            actor,
            json,
        } => {
            let def = engine.definition(&process, None).await.map_err(fail)?;
            let mut values: BTreeMap<String, Json> = BTreeMap::new();
            if let Some(f) = vars_file {
                let text = read_vars_file(&f).map_err(|e| {
                    errln!("duban: {}: {e}", f.display());
                    exit::USAGE
                })?;
                let v = values::from_vars_file(&text).map_err(|e| {
                    errln!("duban: {}: {e}", f.display());
                    exit::USAGE
                })?;
                values.extend(v);
            }
            let pairs = split_vars(&vars)?;
            values.extend(engine.typed(&def, pairs.into()).map_err(fail)?);
            let t = engine
                .start(&process, profile.as_deref(), values, &actor, now)
                .await
                .map_err(fail)?;
            if json {
                print_json(
                    &json!({ "id": t.state.id, "definition": t.state.definition, "version": t.state.version, "tasks": t.state.open_tasks().collect::<Vec<_>>() }),
                );
            } else {
                outln!(
                    "started {} ({} v{})",
                    t.state.id,
                    t.state.definition,
                    t.state.version
                );
                outln!("{}", open_tasks_line(&t.state));
            }
        }
        Cmd::Instances {
            status,
            process,
            json,
        } => {
            let rows = engine
                .instances(status.as_deref(), process.as_deref())
                .await
                .map_err(fail)?;
            let mut listed = Vec::new();
            for r in &rows {
                let state = engine.instance(&r.id).await.map_err(fail)?;
                let def = engine
                    .definition(&state.definition, Some(state.version))
                    .await
                    .map_err(fail)?;
                let dir = engine.directory();
                let open: Vec<Json> = state
                    .open_tasks()
                    .map(|t| {
                        json!({
                            "task": t.id,
                            "step": t.step,
                            "step_name": def.steps.get(&t.step).map(|s| s.name.clone()),
                            "assignees": t.assignees.iter().map(|a| json!({ "id": a, "name": name_in(&dir, a) })).collect::<Vec<_>>(),
                            "last_day": t.deadline.as_ref().map(|d| d.last_day.to_string()),
                        })
                    })
                    .collect();
                let mut v = serde_json::to_value(r).expect("serialises");
                v["process_name"] = json!(def.name);
                v["case"] = case_of(&def, &state);
                v["open_tasks"] = json!(open);
                listed.push(v);
            }
            if json {
                print_json(&listed);
            } else if listed.is_empty() {
                outln!("no instances");
            } else {
                for (r, v) in rows.iter().zip(&listed) {
                    let case = v["case"]["value"]
                        .as_str()
                        .map(|c| format!("  {}：{c}", v["case"]["label"].as_str().unwrap_or("")))
                        .unwrap_or_default();
                    outln!(
                        "{:<8} {}（{} v{}）  {}{case}  started {}",
                        r.id,
                        v["process_name"].as_str().unwrap_or(""),
                        r.definition,
                        r.version,
                        r.status,
                        r.started_at
                            .with_timezone(&duban_engine::calendar::LEGAL_TZ)
                            .format("%Y-%m-%d %H:%M")
                    );
                    for t in v["open_tasks"].as_array().into_iter().flatten() {
                        let names: Vec<&str> = t["assignees"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|a| a["name"].as_str())
                            .collect();
                        outln!(
                            "         {} {}（{}） → {}{}",
                            t["task"].as_str().unwrap_or(""),
                            t["step_name"].as_str().unwrap_or(""),
                            t["step"].as_str().unwrap_or(""),
                            names.join("、"),
                            t["last_day"]
                                .as_str()
                                .map(|d| format!("  期限 {d}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
        }
        Cmd::Show { id, json } => {
            let state = engine.instance(&id).await.map_err(fail)?;
            let history = engine.history(&id).await.map_err(fail)?;
            if json {
                let def = engine
                    .definition(&state.definition, Some(state.version))
                    .await
                    .map_err(fail)?;
                let dir = engine.directory();
                let mut open = Vec::new();
                for t in state.open_tasks() {
                    let row = duban_engine::store::TaskRow {
                        id: t.id.clone(),
                        instance: state.id.clone(),
                        step: t.step.clone(),
                        kind: t.kind,
                        assignees: t.assignees.clone(),
                        opened_at: t.opened_at,
                        due: t.deadline.as_ref().map(|d| d.deadline.with_timezone(&Utc)),
                        last_day: t.deadline.as_ref().map(|d| d.last_day.to_string()),
                    };
                    let mut v = task_listing(&def, &state, &dir, &row);
                    v["deadline"] = json!(t.deadline);
                    v["received_at"] = json!(t.received_at);
                    open.push(v);
                }
                let mut timers: Vec<_> = state.timers.values().collect();
                timers.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
                // The shape docs/operations.md documents: what an instance
                // is, not how the engine keeps it.
                print_json(&json!({
                    "instance": {
                        "id": state.id,
                        "process": state.definition,
                        "process_name": def.name,
                        "version": state.version,
                        "profile": state.profile,
                        "status": state.status,
                        "case": case_of(&def, &state),
                        "started_at": state.started_at,
                        "ended_at": state.ended_at,
                        "variables": state.variables,
                    },
                    "open_tasks": open,
                    "timers": timers.iter().map(|t| json!({
                        "id": t.id,
                        "due": t.due,
                        "what": t.kind,
                        "provisional": t.provisional,
                    })).collect::<Vec<_>>(),
                    "history": history,
                }));
            } else {
                let def = engine
                    .definition(&state.definition, Some(state.version))
                    .await
                    .ok();
                crate::timeline::print(&state, &history, def.as_deref());
            }
        }
        Cmd::Tasks {
            assignee,
            role,
            overdue,
            json,
        } => {
            let role_holders = role.map(|r| {
                engine
                    .directory()
                    .people
                    .iter()
                    .filter(|p| p.roles.contains(&r))
                    .map(|p| p.id.clone())
                    .collect()
            });
            let filter = TaskFilter {
                assignee,
                role_holders,
                overdue_at: overdue.then_some(now),
            };
            let rows = engine.tasks(&filter).await.map_err(fail)?;
            // Each instance and its definition loaded once, however many
            // of its tasks are listed.
            let dir = engine.directory();
            let mut loaded: BTreeMap<
                String,
                (
                    InstanceState,
                    std::sync::Arc<duban_engine::definition::Definition>,
                ),
            > = BTreeMap::new();
            let mut listed = Vec::new();
            for t in &rows {
                if !loaded.contains_key(&t.instance) {
                    let state = engine.instance(&t.instance).await.map_err(fail)?;
                    let def = engine
                        .definition(&state.definition, Some(state.version))
                        .await
                        .map_err(fail)?;
                    loaded.insert(t.instance.clone(), (state, def));
                }
                let (state, def) = &loaded[&t.instance];
                listed.push(task_listing(def, state, &dir, t));
            }
            if json {
                print_json(&listed);
            } else if listed.is_empty() {
                outln!("no tasks");
            } else {
                for t in &listed {
                    print_task(t);
                }
            }
        }
        Cmd::Complete {
            task,
            outcome,
            vars,
            actor,
        } => {
            let t = engine
                .complete(&task, &outcome, split_vars(&vars)?, &actor, now)
                .await
                .map_err(fail)?;
            outln!("completed {task} ({outcome})");
            outln!("{}", open_tasks_line(&t.state));
        }
        Cmd::Receive { task, actor } => {
            let t = engine.receive(&task, &actor, now).await.map_err(fail)?;
            let d = t.state.tasks.get(&task).and_then(|t| t.deadline.clone());
            match d {
                Some(d) => outln!(
                    "received {task}; deadline {}  {}",
                    d.last_day,
                    d.explanation
                ),
                None => outln!("received {task}"),
            }
        }
        Cmd::Recuse {
            task,
            person,
            reason,
            actor,
        } => {
            let t = engine
                .request_recusal(&task, &person, &reason, &actor, now)
                .await
                .map_err(fail)?;
            outln!("recusal of {person} from {task} requested; it awaits its decision");
            outln!("{}", open_tasks_line(&t.state));
        }
        Cmd::DecideRecusal {
            task,
            person,
            grant,
            refuse: _,
            actor,
        } => {
            let t = engine
                .decide_recusal(&task, &person, grant, &actor, now)
                .await
                .map_err(fail)?;
            let what = if grant { "granted" } else { "refused" };
            outln!("recusal of {person} from {task} {what}");
            outln!("{}", open_tasks_line(&t.state));
        }
        Cmd::Message { name, key, vars } => {
            let ids = engine
                .message(&name, &key, split_vars(&vars)?, now)
                .await
                .map_err(fail)?;
            outln!("delivered to {}", ids.join(", "));
        }
        Cmd::Cancel { id, reason, actor } => {
            engine
                .cancel(&id, &reason, &actor, now)
                .await
                .map_err(fail)?;
            outln!("cancelled {id}");
        }
        Cmd::SetVar { id, vars, actor } => {
            let t = engine
                .set_variables(&id, split_vars(&vars)?, &actor, now)
                .await
                .map_err(fail)?;
            let names: Vec<String> = t
                .history
                .last()
                .map(|h| h.changed.keys().cloned().collect())
                .unwrap_or_default();
            outln!("set {} on {id}", names.join(", "));
            outln!("{}", open_tasks_line(&t.state));
        }
        Cmd::Restore { .. } => unreachable!("restored before the store is opened"),
        Cmd::CaseFile { id, output } => {
            crate::config::fonts_from_home(db);
            let case = duban_notifiers::case_file::build(&engine, &id, now)
                .await
                .map_err(fail)?;
            let (entries, documents) = (case.timeline.len(), case.documents.len());
            let pdf = duban_notifiers::case_file::pdf(case).await.map_err(|e| {
                errln!("duban: the case file of {id} was not typeset: {e}");
                exit::INVALID
            })?;
            if let Err(e) = crate::output::write_whole(&output, &pdf) {
                errln!("duban: writing {}: {e}", output.display());
                return Err(exit::INVALID);
            }
            outln!(
                "wrote {} ({} bytes): the case file of {id}, {entries} history entries, {documents} documents",
                output.display(),
                pdf.len()
            );
        }
        Cmd::Numbers { json } => {
            /// One counter as `duban numbers` shows it.
            #[derive(serde::Serialize)]
            struct Series {
                series: String,
                last: i64,
                last_number: String,
                next_number: String,
            }
            let rows = duban_engine::store::Store::numbers(engine.store())
                .await
                .map_err(|e| {
                    errln!("duban: {e}");
                    exit::INVALID
                })?;
            let rows: Vec<Series> = rows
                .into_iter()
                .map(|(counter, last)| {
                    let series = counter
                        .strip_prefix("number:")
                        .unwrap_or(&counter)
                        .to_string();
                    Series {
                        last_number: series.replace("{n}", &last.to_string()),
                        next_number: series.replace("{n}", &(last + 1).to_string()),
                        series,
                        last,
                    }
                })
                .collect();
            if json {
                print_json(&rows);
            } else if rows.is_empty() {
                outln!("no document numbers issued yet");
            } else {
                for r in &rows {
                    outln!(
                        "{}  last {} ({}), next {}",
                        r.series,
                        r.last,
                        r.last_number,
                        r.next_number
                    );
                }
            }
        }
        Cmd::Backup { file, json } => {
            let info = engine.store().backup(&file).await.map_err(|e| {
                errln!("duban: {e}");
                exit::INVALID
            })?;
            if json {
                print_json(&info);
            } else {
                outln!("{}", backup_line("backed up into", &info));
            }
        }
        Cmd::Migrate { cmd } => match cmd {
            crate::migrate::MigrateCmd::Plan { args } => {
                let req = crate::migrate::request(&args)?;
                let plans = engine
                    .migration_plan(&req, "admin", now)
                    .await
                    .map_err(fail)?;
                if args.json {
                    print_json(&plans);
                } else {
                    crate::migrate::print(&plans);
                }
                if plans.iter().any(|p| !p.ok()) {
                    return Err(exit::INVALID);
                }
            }
            crate::migrate::MigrateCmd::Apply { args, actor } => {
                let req = crate::migrate::request(&args)?;
                match engine.migration_apply(&req, &actor, now).await {
                    Ok(done) => {
                        if args.json {
                            print_json(&done.plans);
                        } else {
                            crate::migrate::print(&done.plans);
                            outln!(
                                "migrated {} instance(s) of {} from v{} to v{}",
                                done.plans.len(),
                                req.process,
                                req.from,
                                req.to
                            );
                        }
                    }
                    Err(ServiceError::MigrationRefused(plans)) => {
                        if args.json {
                            print_json(&plans);
                        } else {
                            crate::migrate::print(&plans);
                        }
                        errln!(
                            "duban: {}",
                            duban_engine::migration::refused_message(&plans)
                        );
                        return Err(exit::INVALID);
                    }
                    Err(e) => return Err(fail(e)),
                }
            }
        },
        Cmd::Retry { id, actor } => {
            let t = engine.retry(&id, &actor, now).await.map_err(fail)?;
            outln!("retried {id}");
            outln!("{}", open_tasks_line(&t.state));
        }
        Cmd::Directory { cmd } => match cmd {
            DirectoryCmd::Import {
                file,
                replace,
                dry_run,
                allow_empty,
            } => crate::directory::import(&engine, &file, replace, dry_run, allow_empty).await?,
            DirectoryCmd::List { json } => crate::directory::list(&engine, json),
            DirectoryCmd::Show { id, json } => crate::directory::show(&engine, &id, json).await?,
        },
        Cmd::Reassign {
            task,
            to,
            reason,
            actor,
        } => {
            let t = engine
                .reassign(&task, &to, &reason, &actor, now)
                .await
                .map_err(fail)?;
            outln!("reassigned {task} to {}", to.join(", "));
            outln!("{}", open_tasks_line(&t.state));
        }
        Cmd::Token {
            cmd: TokenCmd::Create { person, role, note },
        } => {
            let (t, secret) = engine
                .create_token(person.as_deref(), role.as_deref(), note.as_deref(), now)
                .await
                .map_err(fail)?;
            let what = match (&t.person, &t.role) {
                (Some(p), _) => format!("acts as {p}"),
                (_, Some(r)) => format!("reads the tasks of role {r}"),
                _ => String::new(),
            };
            errln!("token {} {what}; it is shown once, keep it secret:", t.id);
            outln!("{secret}");
        }
        Cmd::Token {
            cmd: TokenCmd::List { json },
        } => {
            let all = engine.tokens().await.map_err(fail)?;
            if json {
                print_json(&all);
            } else {
                for t in all {
                    let state = match t.revoked_at {
                        Some(at) => format!("revoked {}", at.to_rfc3339()),
                        None => "active".into(),
                    };
                    outln!(
                        "{}  {:<24} {state}  {}",
                        t.id,
                        t.person
                            .map(|p| format!("person {p}"))
                            .or(t.role.map(|r| format!("role {r}")))
                            .unwrap_or_default(),
                        t.note.unwrap_or_default()
                    );
                }
            }
        }
        Cmd::Token {
            cmd: TokenCmd::Revoke { id },
        } => {
            if engine.revoke_token(&id, now).await.map_err(fail)? {
                outln!("token {id} revoked");
            } else {
                errln!("duban: no active token {id}");
                return Err(1);
            }
        }
        Cmd::Outbox {
            cmd: Some(OutboxCmd::Retry { id }),
            ..
        } => {
            if engine.outbox_retry(id, now).await.map_err(fail)? {
                outln!("outbox row {id} is pending again");
            } else {
                errln!("duban: no dead outbox row {id}");
                return Err(exit::INVALID);
            }
        }
        Cmd::Outbox {
            cmd: None,
            status,
            json,
        } => {
            let status = status.as_deref().and_then(OutboxStatus::parse);
            let rows = engine.outbox(status).await.map_err(fail)?;
            if json {
                print_json(&rows);
            } else {
                for r in rows {
                    let at = r
                        .created_at
                        .with_timezone(&duban_engine::calendar::LEGAL_TZ)
                        .format("%Y-%m-%d %H:%M");
                    let err = r
                        .last_error
                        .as_deref()
                        .map(|e| format!("  last error: {e}"))
                        .unwrap_or_default();
                    outln!(
                        "{:<6} {:<8} {:<16} instance {:<8} attempts {}  {at}{err}",
                        r.id,
                        r.status,
                        r.kind,
                        r.instance,
                        r.attempts
                    );
                }
            }
        }
        Cmd::Report {
            from,
            until,
            process,
            step,
            agency,
            json,
        } => {
            if until < from {
                errln!("duban: --until {until} is before --from {from}: the period would be empty");
                return Err(1);
            }
            let q = duban_engine::runtime::reports::ReportQuery {
                process,
                step,
                from,
                until,
            };
            let mut per = engine.report(&q, now).await.map_err(fail)?;
            if let Some(a) = &agency {
                per.retain(|k, _| k == a);
            }
            let total = duban_engine::runtime::reports::Stats::total(per.values());
            let dir = engine.directory();
            let name = |id: &str| {
                use duban_engine::runtime::Directory;
                dir.agency(id).map_or_else(|| id.to_string(), |a| a.name)
            };
            let row = |s: &duban_engine::runtime::reports::Stats| {
                serde_json::json!({
                    "opened": s.opened,
                    "answered": s.answered,
                    "on_time": s.on_time,
                    "overdue": s.overdue,
                    "escalated": s.escalated,
                    "average_days": s.average_days(),
                })
            };
            if json {
                let agencies: Vec<serde_json::Value> = per
                    .iter()
                    .map(|(id, s)| {
                        let mut r = row(s);
                        r["agency"] = serde_json::json!(id);
                        r["name"] = serde_json::json!(name(id));
                        r
                    })
                    .collect();
                print_json(&serde_json::json!({
                    "from": q.from.to_string(),
                    "until": q.until.to_string(),
                    "process": q.process,
                    "step": q.step,
                    "as_of": now.to_rfc3339(),
                    "agencies": agencies,
                    "total": row(&total),
                }));
            } else {
                outln!(
                    "notices dispatched {} to {} (Beijing time), as of {}",
                    q.from,
                    q.until,
                    now.with_timezone(&duban_engine::calendar::LEGAL_TZ)
                        .format("%Y-%m-%d %H:%M")
                );
                outln!(
                    "{:<20} {:>6} {:>8} {:>7} {:>7} {:>9} {:>8}  name",
                    "agency",
                    "sent",
                    "answered",
                    "on_time",
                    "overdue",
                    "escalated",
                    "avg_days"
                );
                let line = |id: &str, s: &duban_engine::runtime::reports::Stats, n: &str| {
                    let avg = s
                        .average_days()
                        .map_or_else(|| "-".to_string(), |d| format!("{d:.1}"));
                    outln!(
                        "{id:<20} {:>6} {:>8} {:>7} {:>7} {:>9} {avg:>8}  {n}",
                        s.opened,
                        s.answered,
                        s.on_time,
                        s.overdue,
                        s.escalated
                    );
                };
                for (id, s) in &per {
                    line(id, s, &name(id));
                }
                line("total", &total, "");
            }
        }
        Cmd::History { person, json } => {
            let rows = engine.person_history(&person).await.map_err(fail)?;
            let facts = engine.facts_about(&person).await.map_err(fail)?;
            if json {
                print_json(&serde_json::json!({ "history": rows, "facts": facts }));
            } else {
                for r in rows {
                    let at = r
                        .entry
                        .at
                        .with_timezone(&duban_engine::calendar::LEGAL_TZ)
                        .format("%Y-%m-%d %H:%M");
                    // The step acted on (a completion's own step), else
                    // the one entered.
                    let step = r
                        .entry
                        .step_before
                        .or(r.entry.step_after)
                        .unwrap_or_default();
                    outln!(
                        "{at}  instance {:<6} {:<16} {step}  {}",
                        r.instance,
                        r.entry.what,
                        r.entry.note.unwrap_or_default()
                    );
                }
                if !facts.is_empty() {
                    outln!("\nfacts about {person}:");
                }
                for f in facts {
                    let at =
                        f.at.with_timezone(&duban_engine::calendar::LEGAL_TZ)
                            .format("%Y-%m-%d %H:%M");
                    let value = match &f.value {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => format!(" = {s}"),
                        v => format!(" = {v}"),
                    };
                    let note = f.note.map(|n| format!("  {n}")).unwrap_or_default();
                    outln!(
                        "{at}  {}{value}  ({} instance {}, step {}, by {}){note}",
                        f.name,
                        f.process,
                        f.instance,
                        f.step,
                        f.actor
                    );
                }
            }
        }
    }
    Ok(())
}
