//! `duban.toml`: the typed configuration of the outbound channels, the
//! outbox and documents; secrets come from the environment only.
//!
//! Loading collects every problem instead of stopping at the first, each
//! naming its key (`email.tls`, `sms.aliyun.templates.reminder`, …), so
//! `duban config check` can list them all. A secret written into the file is
//! itself a problem: the file is meant to be kept in version control.
//!
//! | secret | environment variable |
//! |---|---|
//! | SMTP password | `DUBAN_SMTP_PASSWORD` |
//! | Aliyun AccessKey secret | `DUBAN_ALIYUN_ACCESS_KEY_SECRET` |
//! | SMS webhook HMAC key | `DUBAN_SMS_WEBHOOK_SECRET` |
//! | answer portal signing key (`portal.key_id`) | `DUBAN_PORTAL_KEY` |
//! | retired portal keys, still verifying | `DUBAN_PORTAL_OLD_KEYS` (`ID=SECRET;ID=SECRET`) |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Duration;
use duban_engine::definition::{Channel, Definition};
use serde::Deserialize;

use crate::dispatch::Policy;
use crate::email::{SmtpConfig, Tls};
use crate::sms::{AliyunConfig, Provider, WebhookConfig};

/// The environment variable of the SMTP password.
pub const SMTP_PASSWORD: &str = "DUBAN_SMTP_PASSWORD";
/// The environment variable of the Aliyun AccessKey secret.
pub const ALIYUN_SECRET: &str = "DUBAN_ALIYUN_ACCESS_KEY_SECRET";
/// The environment variable of the webhook's HMAC key.
pub const WEBHOOK_SECRET: &str = "DUBAN_SMS_WEBHOOK_SECRET";
/// The environment variable of the portal's current signing key.
pub const PORTAL_KEY: &str = "DUBAN_PORTAL_KEY";
/// The environment variable of retired portal keys that still verify.
pub const PORTAL_OLD_KEYS: &str = "DUBAN_PORTAL_OLD_KEYS";
/// The shortest signing key accepted, in bytes.
pub const PORTAL_KEY_MIN_BYTES: usize = 32;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    email: Option<EmailSection>,
    sms: Option<SmsSection>,
    #[serde(default)]
    outbox: OutboxSection,
    documents: Option<DocumentsSection>,
    portal: Option<PortalSection>,
    metrics: Option<MetricsSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortalSection {
    listen: Option<String>,
    base_url: String,
    key_id: String,
    key: Option<toml::Value>,
    link_days: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailSection {
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password: Option<toml::Value>,
    from: String,
    timeout_secs: Option<u32>,
    connections: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmsSection {
    provider: String,
    aliyun: Option<AliyunSection>,
    webhook: Option<WebhookSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliyunSection {
    access_key_id: String,
    access_key_secret: Option<toml::Value>,
    sign_name: String,
    endpoint: Option<String>,
    region: Option<String>,
    #[serde(default)]
    templates: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSection {
    url: String,
    secret: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxSection {
    max_attempts: Option<u32>,
    first_retry_secs: Option<u32>,
    max_retry_secs: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentsSection {
    dir: Option<PathBuf>,
    fonts: Option<FontsSection>,
}

/// `[documents.fonts]`: the families of the PDF layouts, each list tried in
/// order before the free fallback, and folders of the office's own fonts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FontsSection {
    body: Option<Vec<String>>,
    title: Option<Vec<String>>,
    heading: Option<Vec<String>>,
    #[serde(default)]
    dirs: Vec<PathBuf>,
}

/// One thing wrong (or worth knowing) about the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key concerned (`email.tls`), or the file for a syntax error.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
    /// A warning does not stop `serve`; an error does.
    pub warning: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = if self.warning { "warning" } else { "error" };
        write!(f, "{level}: {}: {}", self.key, self.message)
    }
}

/// The checked configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Where it was read from (`None`: no file, defaults).
    pub file: Option<PathBuf>,
    /// Email, when configured.
    pub email: Option<SmtpConfig>,
    /// SMS, when configured.
    pub sms: Option<SmsSettings>,
    /// The outbox retry policy.
    pub policy: Policy,
    /// Where documents are written (`documents` beside the database unless set).
    pub documents_dir: Option<PathBuf>,
    /// The fonts of the documents' PDF (`[documents.fonts]`).
    pub fonts: duban_typeset::FontConfig,
    /// The answer portal, when configured.
    pub portal: Option<PortalSettings>,
    /// Where `/healthz` and `/metrics` are served (`[metrics] listen`).
    pub metrics: Option<std::net::SocketAddr>,
}

/// The answer portal's settings (`[portal]`).
#[derive(Clone, Debug)]
pub struct PortalSettings {
    /// The address it listens on.
    pub listen: std::net::SocketAddr,
    /// Signs and checks the links.
    pub links: crate::links::SignedLinks,
}

impl Config {
    /// The links notices carry: signed when the portal is configured.
    pub fn answer_links(&self) -> crate::links::AnswerLinks {
        match &self.portal {
            Some(p) => crate::links::AnswerLinks::Signed(p.links.clone()),
            None => crate::links::AnswerLinks::None(crate::links::NoPortal),
        }
    }
}

/// The SMS provider's settings.
#[derive(Clone, Debug)]
pub enum SmsSettings {
    /// Aliyun.
    Aliyun(AliyunConfig),
    /// Webhook.
    Webhook(WebhookConfig),
}

impl SmsSettings {
    /// The provider to send through.
    pub fn provider(&self) -> Provider {
        match self {
            SmsSettings::Aliyun(a) => Provider::Aliyun(a.clone()),
            SmsSettings::Webhook(w) => Provider::Webhook(w.clone()),
        }
    }
}

/// Reads secrets; a trait so tests need not touch the process environment.
pub trait Env {
    /// The value of `name`, if set and not empty.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
            warning: false,
        });
    }
    fn warn(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
            warning: true,
        });
    }
    fn secret_in_file(&mut self, key: &str, present: bool, var: &str) {
        if present {
            self.error(
                key,
                format!("secrets are not read from the file; remove it and set {var}"),
            );
        }
    }
    fn secret(&mut self, key: &str, env: &dyn Env, var: &str) -> String {
        match env.get(var) {
            Some(v) => v,
            None => {
                self.error(key, format!("{var} is not set"));
                String::new()
            }
        }
    }
    fn http_url(&mut self, key: &str, url: &str) {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => self.error(
                key,
                format!("`{url}` must be an http(s) URL, not {}", u.scheme()),
            ),
            Err(e) => self.error(key, format!("`{url}` is not a URL: {e}")),
        }
    }
    fn not_empty(&mut self, key: &str, v: &str) {
        if v.trim().is_empty() {
            self.error(key, "must not be empty");
        }
    }
}

/// What [`load`] found: the configuration when nothing is an error, and
/// every problem.
pub struct Loaded {
    /// The configuration, `None` when any problem is an error.
    pub config: Option<Config>,
    /// Errors and warnings, in file order.
    pub problems: Vec<Problem>,
}

/// The sections of `table` (the file's text `text`), each read on its own:
/// one that does not fit its shape is one problem, named by its section
/// and line, and the others are still read.
fn sections(table: toml::Table, text: &str, path: &Path, c: &mut Checker) -> FileConfig {
    /// Where in `text` section `$name` goes wrong: the file read again
    /// with that section alone, so the parser's span is the file's.
    macro_rules! locate {
        ($t:ty, $name:literal) => {{
            #[derive(Deserialize)]
            struct Alone {
                #[serde(rename = $name)]
                _section: Option<$t>,
            }
            |text: &str| toml::from_str::<Alone>(text).err().and_then(|e| e.span())
        }};
    }
    fn read<T: serde::de::DeserializeOwned>(
        name: &str,
        v: toml::Value,
        (text, path): (&str, &Path),
        locate: impl Fn(&str) -> Option<std::ops::Range<usize>>,
        c: &mut Checker,
    ) -> Option<T> {
        match v.try_into::<T>() {
            Ok(s) => Some(s),
            Err(e) => {
                let at = match locate(text).map(|s| line_col(text, s.start)) {
                    Some((l, col)) => format!("{}:{l}:{col}", path.display()),
                    None => path.display().to_string(),
                };
                c.error(
                    &format!("{at}: [{name}]"),
                    secrets_not_suggested(e.message()),
                );
                None
            }
        }
    }
    let mut raw = FileConfig::default();
    let file = (text, path);
    for (name, v) in table {
        match name.as_str() {
            "email" => raw.email = read(&name, v, file, locate!(EmailSection, "email"), c),
            "sms" => raw.sms = read(&name, v, file, locate!(SmsSection, "sms"), c),
            "outbox" => {
                raw.outbox = read(&name, v, file, locate!(OutboxSection, "outbox"), c)
                    .unwrap_or_default()
            }
            "documents" => {
                raw.documents = read(&name, v, file, locate!(DocumentsSection, "documents"), c)
            }
            "portal" => raw.portal = read(&name, v, file, locate!(PortalSection, "portal"), c),
            "metrics" => raw.metrics = read(&name, v, file, locate!(MetricsSection, "metrics"), c),
            other => c.error(
                &format!(
                    "{}{}: [{other}]",
                    path.display(),
                    text.lines()
                        .position(|l| l.trim_start().starts_with(&format!("[{other}")) || l.trim_start().starts_with(&format!("{other} ")))
                        .map(|i| format!(":{}", i + 1))
                        .unwrap_or_default()
                ),
                format!("unknown section `{other}`; the sections are email, sms, outbox, documents, portal, metrics"),
            ),
        }
    }
    raw
}

/// A deserialiser's message without the secret keys among the "expected"
/// ones: a secret in the file is itself an error, never a suggestion.
fn secrets_not_suggested(message: &str) -> String {
    let mut m = message.to_string();
    for key in ["password", "key", "secret", "access_key_secret"] {
        for form in [format!("`{key}`, "), format!(", `{key}`")] {
            m = m.replace(&form, "");
        }
    }
    m
}

/// Reads `path` (a missing file is an error when `required`, else the
/// defaults) with secrets from `env`. `definitions` are the deployed
/// processes: their SMS templates must have gateway template codes.
pub fn load(path: &Path, required: bool, env: &dyn Env, definitions: &[&Definition]) -> Loaded {
    let mut c = Checker {
        problems: Vec::new(),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
        Err(e) => {
            c.error(&path.display().to_string(), format!("cannot be read: {e}"));
            return Loaded {
                config: None,
                problems: c.problems,
            };
        }
    };
    let raw: FileConfig = match &text {
        None => FileConfig::default(),
        // A syntax error stops the reading (what follows it cannot be
        // trusted); a section that does not fit its shape is reported and
        // the other sections are still checked, so one run lists them all.
        Some(t) => match toml::from_str::<toml::Table>(t) {
            Ok(table) => sections(table, t, path, &mut c),
            Err(e) => {
                let key = match e.span().map(|s| line_col(t, s.start)) {
                    Some((l, col)) => format!("{}:{l}:{col}", path.display()),
                    None => path.display().to_string(),
                };
                c.error(&key, e.message().to_string());
                return Loaded {
                    config: None,
                    problems: c.problems,
                };
            }
        },
    };
    let mut cfg = Config {
        file: text.is_some().then(|| path.to_path_buf()),
        ..Default::default()
    };

    if let Some(m) = raw.metrics {
        match m.listen.parse::<std::net::SocketAddr>() {
            Ok(a) => cfg.metrics = Some(a),
            Err(e) => c.error(
                "metrics.listen",
                format!(
                    "`{}` is not an address and port ({e}); write e.g. `127.0.0.1:9187`",
                    m.listen
                ),
            ),
        }
    }

    match raw.portal {
        Some(p) => {
            c.secret_in_file("portal.key", p.key.is_some(), PORTAL_KEY);
            c.http_url("portal.base_url", &p.base_url);
            let listen = p.listen.as_deref().unwrap_or("127.0.0.1:8080");
            let addr = match listen.parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(e) => {
                    c.error(
                        "portal.listen",
                        format!("`{listen}` is not an address and port ({e}); write e.g. `127.0.0.1:8080`"),
                    );
                    None
                }
            };
            let kid_ok = |k: &str| {
                !k.is_empty() && k.len() <= 32 && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            };
            if !kid_ok(&p.key_id) {
                c.error(
                    "portal.key_id",
                    format!("`{}` must be 1 to 32 letters, digits, `-` or `_` (it is written into every link)", p.key_id),
                );
            }
            let mut keys = BTreeMap::new();
            let current = c.secret("portal.key_id", env, PORTAL_KEY);
            if !current.is_empty() && current.len() < PORTAL_KEY_MIN_BYTES {
                c.error(
                    "portal.key_id",
                    format!("{PORTAL_KEY} is {} bytes; a signing key needs at least {PORTAL_KEY_MIN_BYTES} (e.g. `openssl rand -base64 48`)", current.len()),
                );
            }
            keys.insert(p.key_id.clone(), current.into_bytes());
            if let Some(old) = env.get(PORTAL_OLD_KEYS) {
                for pair in old.split(';').filter(|x| !x.trim().is_empty()) {
                    match pair.split_once('=') {
                        Some((id, secret)) if kid_ok(id.trim()) && secret.len() >= PORTAL_KEY_MIN_BYTES => {
                            if id.trim() == p.key_id {
                                c.error("portal.key_id", format!("{PORTAL_OLD_KEYS} holds key `{}` again, which is the current key", p.key_id));
                            }
                            keys.entry(id.trim().to_string())
                                .or_insert_with(|| secret.as_bytes().to_vec());
                        }
                        _ => c.error(
                            "portal",
                            format!("{PORTAL_OLD_KEYS}: an entry is not `ID=SECRET` with a secret of at least {PORTAL_KEY_MIN_BYTES} bytes"),
                        ),
                    }
                }
            }
            let days = match p.link_days {
                Some(0) => {
                    c.error("portal.link_days", "0 would make every link expire at once");
                    60
                }
                Some(d) => d,
                None => 60,
            };
            let links = crate::links::SignedLinks::new(
                &p.base_url,
                &p.key_id,
                keys,
                Duration::days(days.into()),
            );
            if let (Some(listen), Some(links)) = (addr, links) {
                cfg.portal = Some(PortalSettings { listen, links });
            }
        }
        None => c.warn(
            "portal",
            "not configured: notices say the answer portal is not enabled, and agencies answer through the office (add `[portal]` with `base_url` and `key_id`, and set DUBAN_PORTAL_KEY)",
        ),
    }

    match raw.email {
        Some(e) => {
            c.secret_in_file("email.password", e.password.is_some(), SMTP_PASSWORD);
            c.not_empty("email.host", &e.host);
            let tls = match e.tls.as_deref().unwrap_or("starttls") {
                "none" => Tls::None,
                "starttls" => Tls::StartTls,
                "implicit" => Tls::Implicit,
                other => {
                    c.error(
                        "email.tls",
                        format!("`{other}` must be starttls, implicit or none"),
                    );
                    Tls::StartTls
                }
            };
            let port = match e.port {
                Some(0) => {
                    c.error("email.port", "0 is not a port");
                    0
                }
                Some(p) => p,
                None => match tls {
                    Tls::Implicit => 465,
                    Tls::StartTls => 587,
                    Tls::None => 25,
                },
            };
            if let Err(err) = e.from.parse::<lettre::message::Mailbox>() {
                c.error(
                    "email.from",
                    format!(
                        "`{}` is not an address ({err}); write e.g. `督办系统 <duban@sfj.example.gov.cn>`",
                        e.from
                    ),
                );
            }
            let password = e
                .username
                .as_ref()
                .map(|_| c.secret("email.username", env, SMTP_PASSWORD));
            let domain = e
                .from
                .rsplit('@')
                .next()
                .unwrap_or("duban")
                .trim_end_matches('>')
                .to_string();
            let timeout = match e.timeout_secs {
                Some(0) => {
                    c.error(
                        "email.timeout_secs",
                        "0 would give up at once; give seconds, e.g. 20",
                    );
                    SmtpConfig::TIMEOUT
                }
                // A row is begun within the first half of its claim's
                // lease (2 minutes) and its delivery is bounded by twice
                // the timeout: longer, and another process could take the
                // row while it is still being sent.
                Some(s) if s > 30 => {
                    c.error(
                        "email.timeout_secs",
                        format!("{s} is more than 30: a delivery, bounded by twice it, must end within the outbox lease"),
                    );
                    SmtpConfig::TIMEOUT
                }
                Some(s) => std::time::Duration::from_secs(s.into()),
                None => SmtpConfig::TIMEOUT,
            };
            let connections = match e.connections {
                Some(0) => {
                    c.error("email.connections", "at least 1 connection");
                    1
                }
                // Each message in flight also reads the store; more than the
                // store's pool (8 on SQLite) starves it.
                Some(n) if n > 8 => {
                    c.error("email.connections", format!("{n} is more than 8"));
                    8
                }
                Some(n) => n,
                None => SmtpConfig::CONNECTIONS,
            };
            cfg.email = Some(SmtpConfig {
                host: e.host,
                port,
                tls,
                username: e.username,
                password,
                from: e.from,
                domain,
                timeout,
                connections,
            });
        }
        None => c.warn(
            "email",
            "not configured: email notifications stay pending in the outbox",
        ),
    }

    let sends_sms: Vec<(String, String)> = definitions
        .iter()
        .flat_map(|d| sms_templates(d).into_iter().map(|t| (d.id.clone(), t)))
        .collect();
    match raw.sms {
        Some(s) => match s.provider.as_str() {
            "aliyun" => match s.aliyun {
                Some(a) => {
                    c.secret_in_file(
                        "sms.aliyun.access_key_secret",
                        a.access_key_secret.is_some(),
                        ALIYUN_SECRET,
                    );
                    c.not_empty("sms.aliyun.access_key_id", &a.access_key_id);
                    c.not_empty("sms.aliyun.sign_name", &a.sign_name);
                    let endpoint = a
                        .endpoint
                        .unwrap_or_else(|| "https://dysmsapi.aliyuncs.com/".into());
                    c.http_url("sms.aliyun.endpoint", &endpoint);
                    for (t, code) in &a.templates {
                        if !code.starts_with("SMS_") {
                            c.error(
                                &format!("sms.aliyun.templates.{t}"),
                                format!("`{code}` is not an Aliyun TemplateCode (SMS_…)"),
                            );
                        }
                    }
                    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                    for (process, t) in &sends_sms {
                        if !a.templates.contains_key(t) {
                            missing.entry(t).or_default().push(process);
                        }
                    }
                    for (t, processes) in missing {
                        c.error(
                            &format!("sms.aliyun.templates.{t}"),
                            format!(
                                "missing: {} send(s) template `{t}` by SMS; \
                                 give its approved TemplateCode",
                                processes.join(", ")
                            ),
                        );
                    }
                    let secret = c.secret("sms.aliyun", env, ALIYUN_SECRET);
                    cfg.sms = Some(SmsSettings::Aliyun(AliyunConfig {
                        endpoint,
                        region: a.region.unwrap_or_else(|| "cn-hangzhou".into()),
                        access_key_id: a.access_key_id,
                        access_key_secret: secret,
                        sign_name: a.sign_name,
                        template_codes: a.templates,
                    }));
                }
                None => c.error(
                    "sms.aliyun",
                    "provider is aliyun but [sms.aliyun] is missing",
                ),
            },
            "webhook" => match s.webhook {
                Some(w) => {
                    c.secret_in_file("sms.webhook.secret", w.secret.is_some(), WEBHOOK_SECRET);
                    c.http_url("sms.webhook.url", &w.url);
                    let secret = c.secret("sms.webhook", env, WEBHOOK_SECRET);
                    cfg.sms = Some(SmsSettings::Webhook(WebhookConfig { url: w.url, secret }));
                }
                None => c.error(
                    "sms.webhook",
                    "provider is webhook but [sms.webhook] is missing",
                ),
            },
            other => c.error(
                "sms.provider",
                format!("`{other}` must be aliyun or webhook"),
            ),
        },
        None if !sends_sms.is_empty() => c.warn(
            "sms",
            format!(
                "not configured: {} template(s) are sent by SMS and stay pending in the outbox",
                sends_sms.len()
            ),
        ),
        None => {}
    }

    let o = raw.outbox;
    let mut policy = Policy::default();
    if let Some(n) = o.max_attempts {
        if n == 0 {
            c.error("outbox.max_attempts", "must be at least 1");
        } else {
            policy.max_attempts = n;
        }
    }
    if let Some(s) = o.first_retry_secs {
        if s == 0 {
            c.error("outbox.first_retry_secs", "must be at least 1");
        } else {
            policy.first_delay = Duration::seconds(s.into());
        }
    }
    if let Some(s) = o.max_retry_secs {
        policy.max_delay = Duration::seconds(s.into());
    }
    if policy.max_delay < policy.first_delay {
        c.error(
            "outbox.max_retry_secs",
            format!(
                "{} s is shorter than the first retry ({} s)",
                policy.max_delay.num_seconds(),
                policy.first_delay.num_seconds()
            ),
        );
    }
    cfg.policy = policy;

    let (dir, fonts) = match raw.documents {
        Some(d) => (d.dir, d.fonts),
        None => (None, None),
    };
    if let Some(dir) = dir {
        // Checked without creating anything: the nearest existing folder on
        // the way must be a writable folder (the writer creates the rest).
        let existing = dir
            .ancestors()
            .find(|a| a.as_os_str().is_empty() || a.exists());
        let existing = match existing {
            Some(a) if a.as_os_str().is_empty() => Path::new("."),
            Some(a) => a,
            None => Path::new("/"),
        };
        if !existing.is_dir() {
            c.error(
                "documents.dir",
                format!("`{}` is in the way and not a folder", existing.display()),
            );
        } else if let Err(e) = tempfile::tempfile_in(existing) {
            c.error(
                "documents.dir",
                format!("`{}` is not writable: {e}", existing.display()),
            );
        }
        cfg.documents_dir = Some(dir.clone());
    }
    if let Some(f) = fonts {
        let mut fc = duban_typeset::FontConfig::default();
        for (key, list, into) in [
            ("body", f.body, &mut fc.body),
            ("title", f.title, &mut fc.title),
            ("heading", f.heading, &mut fc.heading),
        ] {
            if let Some(list) = list {
                if list.iter().any(|n| n.trim().is_empty()) {
                    c.error(
                        &format!("documents.fonts.{key}"),
                        "a font family's name is empty".to_string(),
                    );
                }
                *into = list;
            }
        }
        for d in &f.dirs {
            if !d.is_dir() {
                c.error(
                    "documents.fonts.dirs",
                    format!("`{}` is not a folder", d.display()),
                );
            }
        }
        fc.dirs = f.dirs;
        cfg.fonts = fc;
    }

    let failed = c.problems.iter().any(|p| !p.warning);
    Loaded {
        config: (!failed).then_some(cfg),
        problems: c.problems,
    }
}

/// What the fonts found for the documents' PDF mean for an operator:
/// a warning for each configured family that is not installed (its text
/// falls back to the next), and one when no font can set Chinese at all
/// (every document would then be refused rather than printed with blanks).
///
/// `configured`: whether `[documents.fonts]` names the families; the
/// defaults (仿宋_GB2312, 方正小标宋) are missing on most machines, and the
/// free fallback standing in for them is no problem to warn of.
pub fn font_problems(report: &duban_typeset::FontReport, configured: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    if !report.cjk {
        out.push(Problem {
            key: "documents.fonts".into(),
            message: format!(
                "no CJK font found ({} font faces in all): no document can be typeset as PDF; install Debian's fonts-noto-cjk or the office's fonts (`dirs` under [documents.fonts])",
                report.faces
            ),
            warning: true,
        });
        return out;
    }
    let missing: Vec<&str> = report
        .families
        .iter()
        .filter(|(_, found)| !found)
        .map(|(n, _)| n.as_str())
        .collect();
    if configured && !missing.is_empty() {
        let found: Vec<&str> = report
            .families
            .iter()
            .filter(|(_, found)| *found)
            .map(|(n, _)| n.as_str())
            .collect();
        out.push(Problem {
            key: "documents.fonts".into(),
            message: format!(
                "not installed: {}; documents use the next family of each list ({})",
                missing.join(", "),
                if found.is_empty() {
                    "none found".to_string()
                } else {
                    found.join(", ")
                }
            ),
            warning: true,
        });
    }
    out
}

/// The templates `d` sends by SMS.
pub fn sms_templates(d: &Definition) -> Vec<String> {
    let mut out: Vec<String> = d
        .notifications
        .iter()
        .filter(|n| n.channels.contains(&Channel::Sms))
        .map(|n| n.template.clone())
        .collect();
    // Escalations with their own template go by email and SMS.
    for step in d.steps.values() {
        if let Some(t) = step
            .kind
            .deadline()
            .and_then(|d| d.on_expiry.as_ref())
            .and_then(|x| x.template.as_ref())
        {
            out.push(t.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, env: &[(&str, &str)]) -> Loaded {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("duban.toml");
        std::fs::write(&p, text.replace("DIR", &dir.path().display().to_string())).unwrap();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(&p, true, &env, &[])
    }

    fn errors(l: &Loaded) -> Vec<String> {
        l.problems
            .iter()
            .filter(|p| !p.warning)
            .map(|p| p.to_string())
            .collect()
    }

    /// A delivery (twice the step timeout) must end within the outbox
    /// lease's second half, or another process could send the row again.
    #[test]
    fn an_smtp_timeout_longer_than_the_lease_allows_is_refused() {
        let file = |secs: u32| {
            format!(
                "[email]\nhost = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"a@b.cn\"\ntimeout_secs = {secs}\n"
            )
        };
        assert_eq!(errors(&check(&file(30), &[])), Vec::<String>::new());
        let e = errors(&check(&file(60), &[]));
        assert!(
            e.len() == 1 && e[0].contains("email.timeout_secs") && e[0].contains("more than 30"),
            "{e:?}"
        );
    }

    #[test]
    fn a_complete_file_loads() {
        let l = check(
            r#"
[email]
host = "smtp.example.gov.cn"
username = "duban"
from = "督办系统 <duban@sfj.example.gov.cn>"

[sms]
provider = "aliyun"
[sms.aliyun]
access_key_id = "LTAI-test"
sign_name = "某市司法局"
templates = { reminder = "SMS_1234" }

[outbox]
max_attempts = 5
first_retry_secs = 10

[documents]
dir = "DIR/docs"
"#,
            &[(SMTP_PASSWORD, "pw"), (ALIYUN_SECRET, "s")],
        );
        assert_eq!(errors(&l), Vec::<String>::new());
        let c = l.config.unwrap();
        let e = c.email.unwrap();
        assert_eq!(
            (e.port, e.tls, e.password.as_deref()),
            (587, Tls::StartTls, Some("pw"))
        );
        assert_eq!(e.domain, "sfj.example.gov.cn");
        assert_eq!(c.policy.max_attempts, 5);
        assert_eq!(c.policy.first_delay, Duration::seconds(10));
        assert!(matches!(c.sms, Some(SmsSettings::Aliyun(ref a)) if a.access_key_secret == "s"));
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let l = check(
            r#"
[email]
host = "smtp.example.gov.cn"
tls = "ssl"
port = 0
username = "duban"
password = "hunter2"
from = "not an address"

[sms]
provider = "webhook"
[sms.webhook]
url = "ftp://gateway"

[outbox]
max_attempts = 0
"#,
            &[],
        );
        let e = errors(&l);
        for key in [
            "email.password: secrets are not read from the file; remove it and set DUBAN_SMTP_PASSWORD",
            "email.tls: `ssl` must be starttls, implicit or none",
            "email.port: 0 is not a port",
            "email.from: `not an address`",
            "email.username: DUBAN_SMTP_PASSWORD is not set",
            "sms.webhook.url: `ftp://gateway` must be an http(s) URL",
            "sms.webhook: DUBAN_SMS_WEBHOOK_SECRET is not set",
            "outbox.max_attempts: must be at least 1",
        ] {
            assert!(e.iter().any(|x| x.contains(key)), "{key} not in {e:#?}");
        }
        assert_eq!(e.len(), 8, "{e:#?}");
        assert!(l.config.is_none());
    }

    /// Issue 16: one run reports a problem in every section, not only the
    /// first; the file that was read is named.
    #[test]
    fn every_section_is_checked_in_one_run() {
        let l = check(
            "[email]\nhost = \"h\"\nfrom = \"a@b.c\"\nhots = 1\n[outbox]\nmax_attempts = \"many\"\n[metrics]\nlisten = \"here\"\n[bogus]\n",
            &[],
        );
        let e = errors(&l);
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(
            e.iter().any(|x| x.contains("duban.toml:4:1: [email]")),
            "{e:#?}"
        );
        assert!(
            e.iter().any(|x| x.contains("duban.toml:9: [bogus]")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|x| x.contains("[outbox]") && x.contains("duban.toml:6")),
            "{e:#?}"
        );
        assert!(e.iter().any(|x| x.contains("metrics.listen")), "{e:#?}");
        assert!(
            e.iter().any(|x| x.contains("unknown section `bogus`")),
            "{e:#?}"
        );
        assert!(l.config.is_none());
    }

    #[test]
    fn an_unknown_key_names_its_line() {
        let l = check("[email]\nhost = \"h\"\nfrom = \"a@b.c\"\nhots = 1\n", &[]);
        let e = errors(&l);
        assert_eq!(e.len(), 1, "{e:?}");
        // The section's line (the value is read apart from the text).
        assert!(e[0].contains("duban.toml:4:1: [email]"), "{}", e[0]);
        // A secret key is never suggested: a secret in the file is an error.
        assert!(!e[0].contains("`password`"), "{}", e[0]);
        assert!(e[0].contains("unknown field `hots`"), "{}", e[0]);
    }

    #[test]
    fn no_file_means_defaults_with_warnings() {
        let l = load(
            Path::new("/nonexistent/duban.toml"),
            false,
            &BTreeMap::new(),
            &[],
        );
        assert!(errors(&l).is_empty());
        assert!(l.problems.iter().any(|p| p.key == "email" && p.warning));
        assert!(l.config.unwrap().email.is_none());
        let l = load(
            Path::new("/nonexistent/duban.toml"),
            true,
            &BTreeMap::new(),
            &[],
        );
        assert_eq!(errors(&l).len(), 1);
    }

    /// Issue 14: `[portal]` turns signed answer links on; its key comes
    /// from the environment, long enough, and retired keys still verify.
    #[test]
    fn the_portal_signs_links_with_a_key_from_the_environment() {
        use crate::links::LinkBuilder;
        let key = "k".repeat(40);
        let old = "o".repeat(40);
        let file = "[portal]\nlisten = \"127.0.0.1:18080\"\nbase_url = \"https://duban.example.gov.cn\"\nkey_id = \"2026a\"\n";
        let l = check(
            file,
            &[
                (PORTAL_KEY, &key),
                (PORTAL_OLD_KEYS, &format!("2025b={old}")),
            ],
        );
        assert_eq!(errors(&l), Vec::<String>::new());
        let cfg = l.config.unwrap();
        let p = cfg.portal.as_ref().unwrap();
        assert_eq!(p.listen.port(), 18080);
        let link = cfg.answer_links().answer_link("7", "7.1", "market_bureau");
        assert!(
            link.starts_with("https://duban.example.gov.cn/n/v1.2026a."),
            "{link}"
        );
        // Without a portal, the sentence, and a warning that says how.
        let l = check("", &[]);
        assert!(l.problems.iter().any(|p| p.key == "portal" && p.warning));
        let link = l
            .config
            .unwrap()
            .answer_links()
            .answer_link("7", "7.1", "a");
        assert!(link.contains("答复门户尚未启用"), "{link}");
        for (text, env, says) in [
            (file.to_string(), vec![], "DUBAN_PORTAL_KEY is not set"),
            (file.to_string(), vec![(PORTAL_KEY, "short")], "at least 32"),
            (
                format!("{file}key = \"x\"\n"),
                vec![(PORTAL_KEY, key.as_str())],
                "secrets are not read from the file",
            ),
            (
                file.replace("127.0.0.1:18080", "nowhere"),
                vec![(PORTAL_KEY, key.as_str())],
                "not an address",
            ),
            (
                file.replace("2026a", "a b"),
                vec![(PORTAL_KEY, key.as_str())],
                "letters, digits",
            ),
            (
                file.replace("https://duban", "ftp://duban"),
                vec![(PORTAL_KEY, key.as_str())],
                "http(s) URL",
            ),
        ] {
            let l = check(&text, &env);
            let e = errors(&l).join("\n");
            assert!(e.contains(says), "{text}: {e}");
            assert!(l.config.is_none());
        }
    }

    #[test]
    fn fonts_are_read_and_a_machine_without_cjk_fonts_is_warned_of() {
        let l = check(
            "[documents.fonts]\nbody = [\"仿宋_GB2312\"]\ntitle = [\"方正小标宋简体\"]\ndirs = [\"/tmp\"]\n",
            &[],
        );
        assert_eq!(errors(&l), Vec::<String>::new());
        let fonts = l.config.unwrap().fonts;
        assert_eq!(fonts.body, ["仿宋_GB2312"]);
        assert_eq!(fonts.heading, duban_typeset::FontConfig::default().heading);
        assert_eq!(fonts.dirs, [PathBuf::from("/tmp")]);
        let l = check("[documents.fonts]\ndirs = [\"/no/such/fonts\"]\n", &[]);
        assert!(
            errors(&l).iter().any(|e| e.contains("not a folder")),
            "{:?}",
            errors(&l)
        );

        let none = duban_typeset::FontReport {
            families: vec![("FangSong".into(), false)],
            cjk: false,
            faces: 3,
        };
        let p = font_problems(&none, false);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].warning && p[0].message.contains("no CJK font found"),
            "{p:?}"
        );
        let fallback = duban_typeset::FontReport {
            families: vec![
                ("FangSong".into(), false),
                ("Noto Serif CJK SC".into(), true),
            ],
            cjk: true,
            faces: 30,
        };
        assert!(
            font_problems(&fallback, false).is_empty(),
            "the defaults falling back is no problem"
        );
        let p = font_problems(&fallback, true);
        assert!(p[0].message.contains("not installed: FangSong"), "{p:?}");
    }
}
