//! Outbound channels of duban: the outbox workers that send email and SMS
//! and write documents.
//!
//! The engine writes every notification as an outbox row in the transaction
//! that causes it; nothing here can lose one. The engine's one worker loop
//! (`duban_engine::outbox::drain`) claims pending rows and hands each to a
//! worker: [`dispatch::Dispatcher`] renders it ([`render`]) and gives it to
//! a [`Notifier`]; a failure is retried with exponential backoff, and after
//! a configured number of attempts the row is dead (until `duban outbox
//! retry`).
//! Every message carries an idempotency key derived from its row, so a retry
//! after an uncertain send is recognisable as the same message (the email
//! `Message-ID`).
//!
//! Every channel has its own outbox rows (kind `email` or `sms`): a rule
//! sending by email and SMS writes two rows, delivered and retried on their
//! own, so an SMS gateway outage never re-sends an email.
//!
//! Layout: [`email`] (SMTP through lettre), [`sms`] (Aliyun `SendSms` and a
//! signed webhook), [`render`] (strict handlebars, HTML-escaped and plain),
//! [`dispatch`] (the email and SMS worker), [`documents`] (rendering documents to
//! files), [`links`] (the answer-link interface the portal implements),
//! [`config`] (`duban.toml` and the secrets in the environment).

use std::collections::BTreeMap;

pub mod case_file;
pub mod config;
pub mod dispatch;
pub mod documents;
pub mod email;
pub mod links;
pub mod render;
pub mod sms;

/// Someone a message goes to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Recipient {
    /// Person or agency id.
    pub id: String,
    /// Name, for the greeting.
    pub name: String,
    /// Email address.
    pub email: Option<String>,
    /// Mobile number.
    pub mobile: Option<String>,
}

/// A rendered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The idempotency key: the same for every attempt of one outbox row.
    pub key: String,
    /// The duban template it was rendered from.
    pub template: String,
    /// Recipients.
    pub to: Vec<Recipient>,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body, every value escaped.
    pub html: String,
    /// SMS text: the template's `sms:`, else the subject.
    pub sms: String,
    /// The SMS gateway template's parameters (`sms_params:`).
    pub sms_params: BTreeMap<String, String>,
    /// Files attached to the email: a notice's documents (ignored by SMS).
    pub attachments: Vec<Attachment>,
}

/// A file attached to an email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The file name, e.g. `行政执法监督督办函.pdf`.
    pub filename: String,
    /// Its MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// The content.
    pub bytes: Vec<u8>,
}

/// Why a send failed: the outbox's [`duban_engine::outbox::Failure`], so a
/// notifier's transient and permanent failures feed the one retry policy.
pub use duban_engine::outbox::Failure as SendError;

/// A channel that delivers messages.
#[allow(async_fn_in_trait)]
pub trait Notifier {
    /// The outbox kind it sends (`email`, `sms`).
    fn kind(&self) -> duban_engine::store::OutboxKind;

    /// Sends one message. The same `key` may arrive again after an
    /// uncertain failure; it must identify the same message.
    async fn send(&self, m: &Message) -> Result<(), SendError>;

    /// How many messages it sends at once.
    fn concurrency(&self) -> usize {
        1
    }
}
