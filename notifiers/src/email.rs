//! Email over SMTP (lettre): plain, STARTTLS or implicit TLS; settings from
//! `duban.toml` ([`crate::config`]), the password from the environment.

use duban_engine::store::OutboxKind;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::{Message, Notifier, SendError};

/// How the connection to the SMTP server is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// No TLS (a relay on the same host, tests).
    None,
    /// Upgrade with STARTTLS (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// Where and how to send email.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Connection security.
    pub tls: Tls,
    /// User name, if the server wants one.
    pub username: Option<String>,
    /// Password (from `DUBAN_SMTP_PASSWORD`, never from `duban.toml`).
    pub password: Option<String>,
    /// The sender, e.g. `督办系统 <duban@sfj.example.gov.cn>`.
    pub from: String,
    /// The domain of the `Message-ID`s.
    pub domain: String,
    /// The bound on every step of a delivery (connect, greeting, each
    /// command, the data); the whole delivery of one message is bounded by
    /// twice this.
    pub timeout: std::time::Duration,
    /// Connections kept open to the server, and messages sent at once.
    pub connections: u32,
}

impl SmtpConfig {
    /// The default step timeout.
    pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
    /// The default number of connections.
    pub const CONNECTIONS: u32 = 4;
}

/// Sends email through one SMTP server.
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
    timeout: std::time::Duration,
    connections: u32,
}

impl EmailNotifier {
    /// A notifier for `cfg`; fails on a malformed sender or host.
    pub fn new(cfg: &SmtpConfig) -> Result<EmailNotifier, String> {
        let mut builder = match cfg.tls {
            Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
            Tls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                .map_err(|e| e.to_string())?,
            Tls::Implicit => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host).map_err(|e| e.to_string())?
            }
        }
        .port(cfg.port)
        .timeout(Some(cfg.timeout))
        .pool_config(
            lettre::transport::smtp::PoolConfig::new()
                .max_size(cfg.connections.max(1))
                .idle_timeout(std::time::Duration::from_secs(60)),
        );
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        let from = cfg
            .from
            .parse()
            .map_err(|e| format!("DUBAN_MAIL_FROM `{}`: {e}", cfg.from))?;
        Ok(EmailNotifier {
            transport: builder.build(),
            from,
            domain: cfg.domain.clone(),
            timeout: cfg.timeout,
            connections: cfg.connections.max(1),
        })
    }

    /// The `Message-ID` of a message key: the same on every attempt.
    pub fn message_id(&self, key: &str) -> String {
        format!("<{key}@{}>", self.domain)
    }
}

impl Notifier for EmailNotifier {
    fn kind(&self) -> OutboxKind {
        OutboxKind::Email
    }

    fn concurrency(&self) -> usize {
        self.connections as usize
    }

    async fn send(&self, m: &Message) -> Result<(), SendError> {
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(&m.subject)
            .message_id(Some(self.message_id(&m.key)));
        let mut any = false;
        for r in &m.to {
            if let Some(addr) = &r.email {
                let mb: Mailbox = format!("{} <{addr}>", r.name)
                    .parse()
                    .or_else(|_| addr.parse())
                    .map_err(|e| SendError::Permanent(format!("`{addr}` of {}: {e}", r.id)))?;
                b = b.to(mb);
                any = true;
            }
        }
        if !any {
            let ids: Vec<&str> = m.to.iter().map(|r| r.id.as_str()).collect();
            return Err(SendError::Permanent(format!(
                "no email address for {}",
                ids.join(", ")
            )));
        }
        let body = MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(m.text.clone()),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(m.html.clone()),
            );
        let email = if m.attachments.is_empty() {
            b.multipart(body)
        } else {
            let html = ContentType::parse("text/html; charset=utf-8").expect("a valid type");
            let mut mixed = MultiPart::mixed().multipart(body);
            for a in &m.attachments {
                mixed = mixed.singlepart(
                    lettre::message::Attachment::new(a.filename.clone())
                        .body(a.html.clone(), html.clone()),
                );
            }
            b.multipart(mixed)
        }
        .map_err(|e| SendError::Permanent(e.to_string()))?;
        // A server that accepts and then says nothing must not hold the
        // channel: the whole delivery is bounded, whatever lettre bounds.
        let whole = self.timeout * 2;
        match tokio::time::timeout(whole, self.transport.send(email)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Ok(Err(e)) => Err(SendError::Transient(e.to_string())),
            Err(_) => Err(SendError::Transient(format!(
                "the SMTP server did not complete the delivery within {} s",
                whole.as_secs()
            ))),
        }
    }
}
