//! Email over SMTP: lettre speaks the protocol over connections the
//! notifier opens (no-delay) and keeps; plain, STARTTLS or implicit TLS;
//! settings from `duban.toml` ([`crate::config`]), the password from the
//! environment.

use duban_engine::store::OutboxKind;
use lettre::address::Envelope;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

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
    pub timeout: Duration,
    /// Connections kept open to the server, and messages sent at once.
    pub connections: u32,
}

impl SmtpConfig {
    /// The default step timeout.
    pub const TIMEOUT: Duration = Duration::from_secs(20);
    /// The default number of connections.
    pub const CONNECTIONS: u32 = 4;
}

/// Sends email through one SMTP server, over connections of its own.
///
/// lettre's transport is not used for the connection: it cannot set
/// `TCP_NODELAY`, and lettre writes a message's body and its terminating
/// `.` in two writes, so Nagle's algorithm meeting the server's delayed ACK
/// held every message ~40 ms. The notifier opens its TCP connections itself
/// (no-delay set), hands them to lettre's [`AsyncSmtpConnection`] for the
/// protocol, and keeps up to `connections` of them open between messages.
pub struct EmailNotifier {
    server: Server,
    idle: std::sync::Mutex<Vec<Idle>>,
    slots: tokio::sync::Semaphore,
    from: Mailbox,
    domain: String,
    timeout: Duration,
    connections: u32,
}

/// Where to connect and how to open a session.
struct Server {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<Credentials>,
    hello: ClientId,
}

/// An open connection waiting for the next message.
struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// A connection idle this long is checked with `NOOP` before it is used.
const CHECK_AFTER: Duration = Duration::from_secs(5);
/// A connection idle this long is closed instead of used.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Implicit TLS over a no-delay TCP stream, as lettre's connection wants it.
#[derive(Debug)]
struct TlsTcp(tokio_native_tls::TlsStream<TcpStream>);

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().get_ref().get_ref().peer_addr()
    }
}

impl tokio::io::AsyncRead for TlsTcp {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Why a connection could not be opened.
fn connect_error(what: &str, e: impl std::fmt::Display) -> SendError {
    SendError::Transient(format!("{what}: {e}"))
}

impl Server {
    /// Opens a session; every failure is transient: a refused greeting or
    /// a wrong password is the server's or the configuration's fault, not
    /// the message's, and must not make every pending row dead.
    async fn open(&self, timeout: Duration) -> Result<AsyncSmtpConnection, SendError> {
        self.session(timeout).await.map_err(|e| match e {
            SendError::Permanent(m) => SendError::Transient(m),
            t => t,
        })
    }

    /// TCP (no-delay), TLS as configured, greeting, EHLO, STARTTLS, AUTH;
    /// each step bounded by `timeout`.
    async fn session(&self, timeout: Duration) -> Result<AsyncSmtpConnection, SendError> {
        let bounded = |what: &'static str| {
            move |_| {
                SendError::Transient(format!("{what}: no answer within {} s", timeout.as_secs()))
            }
        };
        let addr = (self.host.as_str(), self.port);
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(bounded("connect"))?
            .map_err(|e| connect_error("connect", e))?;
        tcp.set_nodelay(true)
            .map_err(|e| connect_error("TCP_NODELAY", e))?;
        let stream: Box<dyn AsyncTokioStream> = match self.tls {
            Tls::Implicit => {
                let tls = tokio_native_tls::native_tls::TlsConnector::new()
                    .map_err(|e| connect_error("TLS", e))?;
                let tls = tokio_native_tls::TlsConnector::from(tls);
                let s = tokio::time::timeout(timeout, tls.connect(&self.host, tcp))
                    .await
                    .map_err(bounded("TLS handshake"))?
                    .map_err(|e| connect_error("TLS handshake", e))?;
                Box::new(TlsTcp(s))
            }
            Tls::None | Tls::StartTls => Box::new(tcp),
        };
        let mut conn = tokio::time::timeout(
            timeout,
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello),
        )
        .await
        .map_err(bounded("greeting"))?
        .map_err(smtp_error)?;
        if self.tls == Tls::StartTls {
            let params = TlsParameters::new(self.host.clone()).map_err(smtp_error)?;
            tokio::time::timeout(timeout, conn.starttls(params, &self.hello))
                .await
                .map_err(bounded("STARTTLS"))?
                .map_err(smtp_error)?;
        }
        if let Some(c) = &self.credentials {
            tokio::time::timeout(timeout, conn.auth(&[Mechanism::Plain, Mechanism::Login], c))
                .await
                .map_err(bounded("AUTH"))?
                .map_err(smtp_error)?;
        }
        Ok(conn)
    }
}

/// A protocol error as a delivery outcome: 5xx answers are permanent.
fn smtp_error(e: lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::Permanent(e.to_string())
    } else {
        SendError::Transient(e.to_string())
    }
}

impl EmailNotifier {
    /// A notifier for `cfg`; fails on a malformed sender.
    pub fn new(cfg: &SmtpConfig) -> Result<EmailNotifier, String> {
        let from = cfg
            .from
            .parse()
            .map_err(|e| format!("DUBAN_MAIL_FROM `{}`: {e}", cfg.from))?;
        let credentials = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.clone())),
            _ => None,
        };
        let connections = cfg.connections.max(1);
        Ok(EmailNotifier {
            server: Server {
                host: cfg.host.clone(),
                port: cfg.port,
                tls: cfg.tls,
                credentials,
                hello: ClientId::default(),
            },
            idle: std::sync::Mutex::new(Vec::new()),
            slots: tokio::sync::Semaphore::new(connections as usize),
            from,
            domain: cfg.domain.clone(),
            timeout: cfg.timeout,
            connections,
        })
    }

    /// The `Message-ID` of a message key: the same on every attempt.
    pub fn message_id(&self, key: &str) -> String {
        format!("<{key}@{}>", self.domain)
    }

    /// An open connection: a recent idle one, or a new one.
    async fn connection(&self) -> Result<AsyncSmtpConnection, SendError> {
        loop {
            let idle = self.idle.lock().expect("the idle list").pop();
            let Some(mut c) = idle else { break };
            let age = c.since.elapsed();
            if age > IDLE_LIMIT || c.conn.has_broken() {
                continue;
            }
            if age <= CHECK_AFTER {
                return Ok(c.conn);
            }
            let alive = tokio::time::timeout(self.timeout, c.conn.test_connected()).await;
            if alive == Ok(true) {
                return Ok(c.conn);
            }
        }
        self.server.open(self.timeout).await
    }

    /// Delivers one formatted message over a pooled connection.
    async fn deliver(&self, envelope: &Envelope, bytes: &[u8]) -> Result<(), SendError> {
        let mut conn = self.connection().await?;
        match conn.send(envelope, bytes).await {
            Ok(_) => {
                let mut idle = self.idle.lock().expect("the idle list");
                if idle.len() < self.connections as usize {
                    idle.push(Idle {
                        conn,
                        since: Instant::now(),
                    });
                }
                Ok(())
            }
            Err(e) => {
                // The session's state is unknown after a failure: close it.
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.abort()).await;
                Err(smtp_error(e))
            }
        }
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
            let mut mixed = MultiPart::mixed().multipart(body);
            for a in &m.attachments {
                let ty = ContentType::parse(&a.content_type)
                    .map_err(|e| SendError::Permanent(format!("{}: {e}", a.content_type)))?;
                mixed = mixed.singlepart(
                    lettre::message::Attachment::new(a.filename.clone()).body(a.bytes.clone(), ty),
                );
            }
            b.multipart(mixed)
        }
        .map_err(|e| SendError::Permanent(e.to_string()))?;
        // A server that accepts and then says nothing must not hold the
        // channel: the whole delivery (waiting for a connection included)
        // is bounded.
        let whole = self.timeout * 2;
        let bytes = email.formatted();
        let delivery = async {
            let _slot =
                self.slots.acquire().await.map_err(|_| {
                    SendError::Transient("the email notifier is closed".to_string())
                })?;
            self.deliver(email.envelope(), &bytes).await
        };
        match tokio::time::timeout(whole, delivery).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Transient(format!(
                "the SMTP server did not complete the delivery within {} s",
                whole.as_secs()
            ))),
        }
    }
}
