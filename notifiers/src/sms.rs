//! SMS: Aliyun's `SendSms` (dysmsapi) and a generic signed webhook.
//!
//! Chinese carriers only deliver SMS from pre-approved templates, so a
//! gateway does not take free text: Aliyun takes a `TemplateCode` (mapped
//! from the duban template id in `duban.toml`) and the template's
//! parameters as JSON (`sms_params:` of the process template). The webhook
//! provider, for other gateways, posts the rendered text and the parameters
//! and lets the gateway decide.
//!
//! Idempotency: the outbox row's key travels as Aliyun's `OutId` and as the
//! webhook's `id`, so a gateway (or whoever reads its receipts) recognises
//! a retry of an uncertain send as the same message.
//!
//! Signing follows Aliyun's RPC signature version 1.0 ("签名机制",
//! <https://help.aliyun.com/document_detail/56189.html>): the parameters
//! sorted by name, each name and value percent-encoded (RFC 3986 unreserved
//! characters kept, space as `%20`), joined as a query, then
//! `METHOD&%2F&encode(query)` signed with HMAC-SHA1 under `secret&` and
//! base64-encoded. The tests check it against the document's published
//! example.

use duban_engine::store::OutboxKind;
use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;

use crate::{Message, Notifier, SendError};

/// Percent-encoding as Aliyun's POP signature wants it: every byte but
/// `A-Z a-z 0-9 - _ . ~` becomes `%XY` (upper-case hex), UTF-8 first.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical query: parameters sorted by name (excluding `Signature`),
/// names and values encoded, joined by `&`.
pub fn canonical_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The string Aliyun signs: `METHOD&%2F&encode(canonical query)`.
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    )
}

/// The `Signature` of a request: HMAC-SHA1 of [`string_to_sign`] under
/// `secret&`, base64.
pub fn aliyun_signature(method: &str, params: &BTreeMap<String, String>, secret: &str) -> String {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(format!("{secret}&").as_bytes())
        .expect("HMAC takes any key length");
    mac.update(string_to_sign(method, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The hex HMAC-SHA256 of `data` under `secret`: the webhook's signature.
pub fn hmac_sha256_hex(secret: &[u8], data: &[u8]) -> String {
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Aliyun SMS settings.
#[derive(Clone, Debug)]
pub struct AliyunConfig {
    /// The API endpoint, `https://dysmsapi.aliyuncs.com/` unless a test
    /// points it elsewhere.
    pub endpoint: String,
    /// `RegionId`, `cn-hangzhou` by default.
    pub region: String,
    /// The AccessKey id.
    pub access_key_id: String,
    /// The AccessKey secret (from `DUBAN_ALIYUN_ACCESS_KEY_SECRET`).
    pub access_key_secret: String,
    /// The approved signature (签名), e.g. `某市司法局`.
    pub sign_name: String,
    /// duban template id → approved `TemplateCode`.
    pub template_codes: BTreeMap<String, String>,
}

/// Generic webhook settings.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// The HMAC key (from `DUBAN_SMS_WEBHOOK_SECRET`).
    pub secret: String,
}

/// Where a request's nonce and time come from; fixed in tests so a request
/// can be compared with a published example.
pub trait RequestClock: Send + Sync {
    /// The request's time.
    fn now(&self) -> DateTime<Utc>;
    /// A nonce never used before.
    fn nonce(&self) -> String;
}

/// The real clock and random nonces.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl RequestClock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn nonce(&self) -> String {
        use std::hash::{BuildHasher, Hasher};
        // 128 random bits from two independently seeded SipHash states,
        // plus the time: no extra crate for a value Aliyun only wants
        // unique within 15 minutes.
        let a = std::collections::hash_map::RandomState::new().build_hasher();
        let mut b = std::collections::hash_map::RandomState::new().build_hasher();
        b.write_i64(Utc::now().timestamp_nanos_opt().unwrap_or_default());
        format!("{:016x}{:016x}", a.finish(), b.finish())
    }
}

/// The SMS gateway.
pub enum Provider {
    /// Aliyun dysmsapi `SendSms`.
    Aliyun(AliyunConfig),
    /// A JSON POST signed with HMAC-SHA256.
    Webhook(WebhookConfig),
}

/// Sends SMS through one provider.
pub struct SmsNotifier {
    provider: Provider,
    http: reqwest::Client,
    clock: Box<dyn RequestClock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliyunResponse {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    biz_id: Option<String>,
}

/// Aliyun codes worth retrying: flow control and throttling.
fn aliyun_transient(code: &str) -> bool {
    code == "isv.BUSINESS_LIMIT_CONTROL"
        || code.starts_with("Throttling")
        || code == "ServiceUnavailable"
        || code == "InternalError"
        || code == "SignatureNonceUsed"
}

impl SmsNotifier {
    /// A notifier for `provider`, with real time and nonces.
    pub fn new(provider: Provider) -> Result<SmsNotifier, String> {
        Self::with_clock(provider, Box::new(SystemClock))
    }

    /// A notifier whose request time and nonce come from `clock`.
    pub fn with_clock(
        provider: Provider,
        clock: Box<dyn RequestClock>,
    ) -> Result<SmsNotifier, String> {
        let http = reqwest::Client::builder()
            .timeout(StdDuration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(SmsNotifier {
            provider,
            http,
            clock,
        })
    }

    /// The signed `SendSms` parameters for `m` to `phones`.
    pub fn aliyun_params(
        &self,
        cfg: &AliyunConfig,
        m: &Message,
        phones: &[&str],
    ) -> Result<BTreeMap<String, String>, SendError> {
        let code = cfg.template_codes.get(&m.template).ok_or_else(|| {
            SendError::Permanent(format!(
                "sms.aliyun.templates has no TemplateCode for template `{}`",
                m.template
            ))
        })?;
        let params: serde_json::Map<String, serde_json::Value> = m
            .sms_params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let mut p = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            p.insert(k.to_string(), v);
        };
        put("AccessKeyId", cfg.access_key_id.clone());
        put("Action", "SendSms".into());
        put("Format", "JSON".into());
        put("OutId", m.key.clone());
        put("PhoneNumbers", phones.join(","));
        put("RegionId", cfg.region.clone());
        put("SignName", cfg.sign_name.clone());
        put("SignatureMethod", "HMAC-SHA1".into());
        put("SignatureNonce", self.clock.nonce());
        put("SignatureVersion", "1.0".into());
        put("TemplateCode", code.clone());
        put(
            "TemplateParam",
            serde_json::Value::Object(params).to_string(),
        );
        put(
            "Timestamp",
            self.clock.now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        put("Version", "2017-05-25".into());
        let sig = aliyun_signature("GET", &p, &cfg.access_key_secret);
        p.insert("Signature".into(), sig);
        Ok(p)
    }

    async fn send_aliyun(
        &self,
        cfg: &AliyunConfig,
        m: &Message,
        phones: &[&str],
    ) -> Result<(), SendError> {
        let p = self.aliyun_params(cfg, m, phones)?;
        let query = format!(
            "Signature={}&{}",
            percent_encode(&p["Signature"]),
            canonical_query(&p)
        );
        let url = format!("{}?{query}", cfg.endpoint);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("aliyun: {e}")))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| SendError::Transient(format!("aliyun: {e}")))?;
        let parsed: Result<AliyunResponse, _> = serde_json::from_str(&body);
        match parsed {
            Ok(r) if r.code == "OK" => {
                tracing::debug!(out_id = %m.key, biz_id = ?r.biz_id, "aliyun accepted the SMS");
                Ok(())
            }
            Ok(r) if aliyun_transient(&r.code) || status.is_server_error() => Err(
                SendError::Transient(format!("aliyun {}: {}", r.code, r.message)),
            ),
            Ok(r) => Err(SendError::Permanent(format!(
                "aliyun {}: {}",
                r.code, r.message
            ))),
            Err(_) if status.is_server_error() || status.as_u16() == 429 => {
                Err(SendError::Transient(format!("aliyun: HTTP {status}")))
            }
            Err(e) => Err(SendError::Permanent(format!(
                "aliyun: HTTP {status}, unreadable answer ({e}): {}",
                body.chars().take(200).collect::<String>()
            ))),
        }
    }

    async fn send_webhook(
        &self,
        cfg: &WebhookConfig,
        m: &Message,
        phones: &[&str],
    ) -> Result<(), SendError> {
        let body = serde_json::json!({
            "id": m.key,
            "to": phones,
            "template": m.template,
            "text": m.sms,
            "params": m.sms_params,
        })
        .to_string();
        let ts = self.clock.now().timestamp().to_string();
        let sig = hmac_sha256_hex(cfg.secret.as_bytes(), format!("{ts}.{body}").as_bytes());
        let resp = self
            .http
            .post(&cfg.url)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Duban-Timestamp", &ts)
            .header("X-Duban-Signature", format!("sha256={sig}"))
            .header("Idempotency-Key", &m.key)
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("sms webhook: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let what = format!(
            "sms webhook: HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        );
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(SendError::Transient(what))
        } else {
            Err(SendError::Permanent(what))
        }
    }
}

impl Notifier for SmsNotifier {
    fn kind(&self) -> OutboxKind {
        OutboxKind::Sms
    }

    async fn send(&self, m: &Message) -> Result<(), SendError> {
        let phones: Vec<&str> = m.to.iter().filter_map(|r| r.mobile.as_deref()).collect();
        if phones.is_empty() {
            let ids: Vec<&str> = m.to.iter().map(|r| r.id.as_str()).collect();
            return Err(SendError::Permanent(format!(
                "no mobile number for {}",
                ids.join(", ")
            )));
        }
        match &self.provider {
            Provider::Aliyun(cfg) => self.send_aliyun(cfg, m, &phones).await,
            Provider::Webhook(cfg) => self.send_webhook(cfg, m, &phones).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Aliyun's "签名机制" document for `SendSms`.
    fn published_example() -> BTreeMap<String, String> {
        [
            ("AccessKeyId", "testId"),
            ("Action", "SendSms"),
            ("Format", "XML"),
            ("OutId", "123"),
            ("PhoneNumbers", "15300000001"),
            ("RegionId", "cn-hangzhou"),
            ("SignName", "阿里云短信测试专用"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466"),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", "SMS_71390007"),
            ("TemplateParam", "{\"customer\":\"test\"}"),
            ("Timestamp", "2017-07-12T02:42:19Z"),
            ("Version", "2017-05-25"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn signature_matches_the_published_sendsms_example() {
        let p = published_example();
        assert_eq!(
            string_to_sign("GET", &p),
            "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123\
             %26PhoneNumbers%3D15300000001%26RegionId%3Dcn-hangzhou%26SignName%3D\
             %25E9%2598%25BF%25E9%2587%258C%25E4%25BA%2591%25E7%259F%25AD%25E4%25BF%25A1\
             %25E6%25B5%258B%25E8%25AF%2595%25E4%25B8%2593%25E7%2594%25A8\
             %26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D45e25e9b-0a6f-4070-8c85-2956eda1b466\
             %26SignatureVersion%3D1.0%26TemplateCode%3DSMS_71390007\
             %26TemplateParam%3D%257B%2522customer%2522%253A%2522test%2522%257D\
             %26Timestamp%3D2017-07-12T02%253A42%253A19Z%26Version%3D2017-05-25"
        );
        assert_eq!(
            aliyun_signature("GET", &p, "testSecret"),
            "zJDF+Lrzhj/ThnlvIToysFRq6t4="
        );
        // `Signature` itself is never part of what is signed.
        let mut with = p.clone();
        with.insert("Signature".into(), "x".into());
        assert_eq!(
            aliyun_signature("GET", &with, "testSecret"),
            "zJDF+Lrzhj/ThnlvIToysFRq6t4="
        );
        // Any other change changes it.
        let mut other = p;
        other.insert("PhoneNumbers".into(), "15300000002".into());
        assert_ne!(
            aliyun_signature("GET", &other, "testSecret"),
            "zJDF+Lrzhj/ThnlvIToysFRq6t4="
        );
    }

    #[test]
    fn signature_matches_the_published_rpc_example() {
        // The general RPC signature document's DescribeRegions example.
        let p: BTreeMap<String, String> = [
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Version", "2014-05-26"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            aliyun_signature("GET", &p, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    #[test]
    fn percent_encoding_follows_the_pop_rules() {
        assert_eq!(percent_encode("a b"), "a%20b");
        assert_eq!(percent_encode("*"), "%2A");
        assert_eq!(percent_encode("~-_."), "~-_.");
        assert_eq!(percent_encode("/=&+"), "%2F%3D%26%2B");
        assert_eq!(percent_encode("督"), "%E7%9D%A3");
    }

    #[test]
    fn webhook_signature_is_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
