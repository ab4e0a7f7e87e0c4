//! The answer link of a notice: how an agency reaches the page where it
//! answers, without an account.
//!
//! A link carries a **token** binding the instance, the task, the recipient
//! and an expiry, signed with HMAC-SHA256 under a key of the configuration
//! (`[portal]`, secrets from the environment). The token names its key by
//! id, so a new key signs new links while the old ones still verify until
//! the old key is dropped:
//!
//! ```text
//! v1.KEY_ID.PAYLOAD.SIGNATURE
//! PAYLOAD   = base64url(JSON {"i": instance, "t": task, "r": recipient, "e": expiry, unix seconds})
//! SIGNATURE = base64url(HMAC-SHA256(key, "v1.KEY_ID.PAYLOAD"))
//! ```
//!
//! [`SignedLinks`] builds them (for the email dispatcher) and checks them
//! (for the portal): a malformed token, an unknown key id, a signature
//! that does not verify (compared in constant time) and an expired token
//! are each an error of their own, [`LinkError`]. [`NoPortal`] writes a
//! plain sentence instead, when no portal is configured, rather than a link
//! anyone could forge.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};

/// Builds the link an agency answers a notice through.
pub trait LinkBuilder {
    /// The link for `recipient` to answer task `task` of `instance`.
    fn answer_link(&self, instance: &str, task: &str, recipient: &str) -> String;
}

/// No portal: the link is a notice saying so.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPortal;

impl LinkBuilder for NoPortal {
    fn answer_link(&self, _instance: &str, task: &str, _recipient: &str) -> String {
        format!("（答复门户尚未启用，请联系监督机构办理，事项编号 {task}）")
    }
}

/// The links notices carry: signed when the portal is configured, the
/// sentence of [`NoPortal`] otherwise.
#[derive(Clone, Debug)]
pub enum AnswerLinks {
    /// No portal.
    None(NoPortal),
    /// The portal's signed links.
    Signed(SignedLinks),
}

impl LinkBuilder for AnswerLinks {
    fn answer_link(&self, instance: &str, task: &str, recipient: &str) -> String {
        match self {
            AnswerLinks::None(n) => n.answer_link(instance, task, recipient),
            AnswerLinks::Signed(s) => s.answer_link(instance, task, recipient),
        }
    }
}

/// What a verified token says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The instance.
    #[serde(rename = "i")]
    pub instance: String,
    /// The task (a notice).
    #[serde(rename = "t")]
    pub task: String,
    /// The recipient: who answers, and the actor of the events.
    #[serde(rename = "r")]
    pub recipient: String,
    /// When the link stops working, unix seconds.
    #[serde(rename = "e")]
    pub expires: i64,
    /// What the token is for: empty for a notice's answer link, `signin`
    /// for a staff sign-in link, `session` for a staff session; a token of
    /// one purpose is refused for another.
    #[serde(rename = "p", default, skip_serializing_if = "String::is_empty")]
    pub purpose: String,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token of this form at all (cut short, mangled).
    #[error("the link is incomplete or damaged")]
    Malformed,
    /// Signed with a key this server does not have (retired, or foreign).
    #[error("the link was signed with key `{0}`, which this server does not hold")]
    UnknownKey(String),
    /// The signature does not match: the token was altered.
    #[error("the link's signature does not match")]
    BadSignature,
    /// Past its expiry.
    #[error("the link expired at {0}")]
    Expired(DateTime<Utc>),
}

/// The longest a token may be: far above what any real one is (ids are
/// short), so a huge path is refused before anything is decoded.
pub const MAX_TOKEN_BYTES: usize = 2048;

type HmacSha256 = Hmac<sha2::Sha256>;

/// Signs and checks answer links.
#[derive(Clone)]
pub struct SignedLinks {
    /// The public base URL, e.g. `https://duban.example.gov.cn`.
    base_url: String,
    /// The key new links are signed with.
    current: String,
    /// Every key that verifies, by id (the current one included).
    keys: BTreeMap<String, Vec<u8>>,
    /// How long a new link works.
    lifetime: Duration,
    /// The instant links are signed at, for tests; the clock otherwise.
    now: Option<DateTime<Utc>>,
    /// Added to the clock: a rehearsal's clock runs from `DUBAN_NOW`.
    offset: Duration,
}

impl std::fmt::Debug for SignedLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are secrets.
        f.debug_struct("SignedLinks")
            .field("base_url", &self.base_url)
            .field("current", &self.current)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl SignedLinks {
    /// Links under `base_url`, signed with key `current` of `keys` (id →
    /// secret), working for `lifetime`. `None` when `current` is not among
    /// the keys or a key is empty.
    pub fn new(
        base_url: &str,
        current: &str,
        keys: BTreeMap<String, Vec<u8>>,
        lifetime: Duration,
    ) -> Option<SignedLinks> {
        if !keys.contains_key(current) || keys.values().any(Vec::is_empty) {
            return None;
        }
        Some(SignedLinks {
            base_url: base_url.trim_end_matches('/').to_string(),
            current: current.to_string(),
            keys,
            lifetime,
            now: None,
            offset: Duration::zero(),
        })
    }

    /// Signs as at `now` instead of the clock (for tests and rehearsals,
    /// `DUBAN_NOW`).
    pub fn at(mut self, now: DateTime<Utc>) -> SignedLinks {
        self.now = Some(now);
        self
    }

    /// Signs on a clock running `offset` ahead of the system's (`duban
    /// serve` with `DUBAN_NOW`, whose clock starts at that instant), so a
    /// rehearsal's links expire on its own calendar.
    pub fn shifted(mut self, offset: Duration) -> SignedLinks {
        self.offset = offset;
        self
    }

    /// The public base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn mac(key: &[u8], signed: &str) -> HmacSha256 {
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(signed.as_bytes());
        mac
    }

    /// A token for `claims`, signed with the current key.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let signed = format!("v1.{}.{payload}", self.current);
        let sig = Self::mac(&self.keys[&self.current], &signed)
            .finalize()
            .into_bytes();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// The claims of `token` if it is well formed, signed by a key held,
    /// and not expired at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, LinkError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(LinkError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some("v1"), Some(kid), Some(payload), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(LinkError::Malformed);
        };
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| LinkError::UnknownKey(kid.chars().take(32).collect()))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| LinkError::Malformed)?;
        Self::mac(key, &format!("v1.{kid}.{payload}"))
            .verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        // Only a signed payload is decoded.
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(LinkError::Malformed)?;
        let expires = DateTime::from_timestamp(claims.expires, 0).ok_or(LinkError::Malformed)?;
        if now >= expires {
            return Err(LinkError::Expired(expires));
        }
        Ok(claims)
    }

    /// A value bound to `token` for its form's CSRF field: only a page
    /// this server rendered for that very link carries it.
    pub fn form_secret(&self, token: &str) -> String {
        let mac = Self::mac(&self.keys[&self.current], &format!("form:{token}"));
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `given` is the form secret of `token` (in constant time).
    pub fn form_secret_ok(&self, token: &str, given: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(given) else {
            return false;
        };
        Self::mac(&self.keys[&self.current], &format!("form:{token}"))
            .verify_slice(&given)
            .is_ok()
    }
}

impl LinkBuilder for SignedLinks {
    fn answer_link(&self, instance: &str, task: &str, recipient: &str) -> String {
        let now = self.now.unwrap_or_else(|| Utc::now() + self.offset);
        let claims = Claims {
            instance: instance.into(),
            task: task.into(),
            recipient: recipient.into(),
            expires: (now + self.lifetime).timestamp(),
            purpose: String::new(),
        };
        format!("{}/n/{}", self.base_url, self.sign(&claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn links(keys: &[(&str, &str)], current: &str) -> SignedLinks {
        let keys = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        SignedLinks::new("https://duban.example/", current, keys, Duration::days(60))
            .unwrap()
            .at(at("2025-09-22T02:00:00Z"))
    }

    fn token_of(link: &str) -> &str {
        link.strip_prefix("https://duban.example/n/").unwrap()
    }

    #[test]
    fn a_link_verifies_until_it_expires_and_names_what_it_was_made_for() {
        let l = links(&[("k1", "secret one")], "k1");
        let link = l.answer_link("7", "7.1", "market_bureau");
        let t = token_of(&link);
        let c = l.verify(t, at("2025-10-01T00:00:00Z")).unwrap();
        assert_eq!(
            (c.instance.as_str(), c.task.as_str(), c.recipient.as_str()),
            ("7", "7.1", "market_bureau")
        );
        assert_eq!(
            l.verify(t, at("2025-11-21T02:00:00Z")),
            Err(LinkError::Expired(at("2025-11-21T02:00:00Z")))
        );
    }

    #[test]
    fn tampering_an_unknown_key_and_damage_are_each_refused() {
        let l = links(&[("k1", "secret one")], "k1");
        let t = token_of(&l.answer_link("7", "7.1", "market_bureau")).to_string();
        let now = at("2025-10-01T00:00:00Z");
        // Another task, re-encoded under the same signature.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                instance: "7".into(),
                task: "7.2".into(),
                recipient: "market_bureau".into(),
                expires: 4_000_000_000,
                purpose: String::new(),
            })
            .unwrap(),
        );
        let tampered = format!("v1.k1.{forged}.{}", parts[3]);
        assert_eq!(l.verify(&tampered, now), Err(LinkError::BadSignature));
        assert_eq!(
            l.verify(&t.replacen("v1.k1.", "v1.k9.", 1), now),
            Err(LinkError::UnknownKey("k9".into()))
        );
        for bad in [
            "",
            "v1",
            "v2.k1.a.b",
            "v1.k1.a.b.c",
            &t[..t.len() - 3],
            &"x".repeat(5000),
        ] {
            assert!(
                matches!(
                    l.verify(bad, now),
                    Err(LinkError::Malformed | LinkError::BadSignature)
                ),
                "{bad:.40}"
            );
        }
        // A key of another server does not verify.
        let other = links(&[("k1", "another secret")], "k1");
        assert_eq!(other.verify(&t, now), Err(LinkError::BadSignature));
    }

    #[test]
    fn a_rotated_key_still_verifies_the_links_it_signed() {
        let old = links(&[("k1", "secret one")], "k1");
        let t = token_of(&old.answer_link("7", "7.1", "a")).to_string();
        let rotated = links(&[("k1", "secret one"), ("k2", "secret two")], "k2");
        let now = at("2025-10-01T00:00:00Z");
        assert!(rotated.verify(&t, now).is_ok());
        let new = token_of(&rotated.answer_link("7", "7.1", "a")).to_string();
        assert!(new.starts_with("v1.k2."));
        assert!(rotated.verify(&new, now).is_ok());
        assert!(matches!(
            old.verify(&new, now),
            Err(LinkError::UnknownKey(_))
        ));
    }

    #[test]
    fn the_form_secret_is_bound_to_its_link() {
        let l = links(&[("k1", "secret one")], "k1");
        let s = l.form_secret("tok-a");
        assert!(l.form_secret_ok("tok-a", &s));
        assert!(!l.form_secret_ok("tok-b", &s));
        assert!(!l.form_secret_ok("tok-a", "not base64 !"));
    }
}
