//! SMS through a local HTTP gateway started by the test: an Aliyun
//! dysmsapi look-alike that verifies the request signature (its verifier is
//! first checked against Aliyun's published example request), and a
//! webhook receiver that verifies the HMAC header.

mod common;

use duban_engine::store::OutboxKind;
use duban_engine::store::OutboxStatus;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, DurationRound, Utc};
use common::{at, engine};
use duban_engine::service::Engine;
use duban_engine::store::{OutboxRow, SqlStore, Store};
use duban_notifiers::dispatch::{Dispatcher, Policy};
use duban_notifiers::links::NoPortal;
use duban_notifiers::sms::{
    hmac_sha256_hex, AliyunConfig, Provider, RequestClock, SmsNotifier, WebhookConfig,
};
use duban_notifiers::Notifier;
use serde_json::{json, Value};

// ----- the gateway's own verifier, written independently of duban's signer -----

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn encode(s: &str) -> String {
    const KEEP: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~";
    s.bytes()
        .map(|c| {
            if KEEP.contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

/// The query's parameters, decoded.
fn params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Whether `query` carries a valid signature under `secret`.
fn signature_valid(method: &str, query: &str, secret: &str) -> bool {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let mut p = params(query);
    let Some(sig) = p.remove("Signature") else {
        return false;
    };
    let canonical = p
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("{method}&%2F&{}", encode(&canonical));
    let mut mac =
        <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(format!("{secret}&").as_bytes())
            .unwrap();
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()) == sig
}

/// The request URL of the example in Aliyun's "签名机制" document for
/// SendSms (AccessKeyId `testId`, secret `testSecret`).
const PUBLISHED_QUERY: &str = "Signature=zJDF%2BLrzhj%2FThnlvIToysFRq6t4%3D&AccessKeyId=testId&Action=SendSms&Format=XML&OutId=123&PhoneNumbers=15300000001&RegionId=cn-hangzhou&SignName=%E9%98%BF%E9%87%8C%E4%BA%91%E7%9F%AD%E4%BF%A1%E6%B5%8B%E8%AF%95%E4%B8%93%E7%94%A8&SignatureMethod=HMAC-SHA1&SignatureNonce=45e25e9b-0a6f-4070-8c85-2956eda1b466&SignatureVersion=1.0&TemplateCode=SMS_71390007&TemplateParam=%7B%22customer%22%3A%22test%22%7D&Timestamp=2017-07-12T02%3A42%3A19Z&Version=2017-05-25";

#[test]
fn the_gateway_verifier_accepts_the_published_example_and_nothing_else() {
    assert!(signature_valid("GET", PUBLISHED_QUERY, "testSecret"));
    assert!(!signature_valid("GET", PUBLISHED_QUERY, "testsecret"));
    assert!(!signature_valid("POST", PUBLISHED_QUERY, "testSecret"));
    let tampered = PUBLISHED_QUERY.replace("15300000001", "15300000002");
    assert!(!signature_valid("GET", &tampered, "testSecret"));
}

// ----- the local Aliyun look-alike -----

#[derive(Default)]
struct Gateway {
    /// Requests whose signature held.
    received: Mutex<Vec<BTreeMap<String, String>>>,
    /// Requests refused for their signature.
    refused: Mutex<usize>,
    /// Nonces seen (Aliyun refuses a reused one).
    nonces: Mutex<BTreeSet<String>>,
    /// The codes to answer with, in order; `OK` once they run out.
    script: Mutex<VecDeque<&'static str>>,
    /// Webhook bodies whose HMAC held.
    webhook: Mutex<Vec<Value>>,
}

const KEY_ID: &str = "LTAI-duban-test";
const SECRET: &str = "duban-test-secret";
const HOOK_SECRET: &str = "hook-secret";

async fn aliyun(State(g): State<Arc<Gateway>>, RawQuery(q): RawQuery) -> (StatusCode, Json<Value>) {
    let q = q.unwrap_or_default();
    let p = params(&q);
    let answer = |status, code: &str| {
        (
            status,
            Json(json!({ "Code": code, "Message": code, "RequestId": "req-1", "BizId": "biz-1" })),
        )
    };
    if p.get("AccessKeyId").map(String::as_str) != Some(KEY_ID)
        || !signature_valid("GET", &q, SECRET)
    {
        *g.refused.lock().unwrap() += 1;
        return answer(StatusCode::BAD_REQUEST, "SignatureDoesNotMatch");
    }
    let ts = DateTime::parse_from_rfc3339(&p["Timestamp"]).unwrap();
    if (Utc::now() - ts.with_timezone(&Utc)).num_minutes().abs() > 15 {
        return answer(StatusCode::BAD_REQUEST, "InvalidTimeStamp.Expired");
    }
    if !g.nonces.lock().unwrap().insert(p["SignatureNonce"].clone()) {
        return answer(StatusCode::BAD_REQUEST, "SignatureNonceUsed");
    }
    let code = g.script.lock().unwrap().pop_front().unwrap_or("OK");
    if code == "OK" {
        g.received.lock().unwrap().push(p);
    }
    answer(StatusCode::OK, code)
}

async fn webhook(State(g): State<Arc<Gateway>>, headers: HeaderMap, body: String) -> StatusCode {
    let ts = headers
        .get("X-Duban-Timestamp")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let sig = headers
        .get("X-Duban-Signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let want = format!(
        "sha256={}",
        hmac_sha256_hex(HOOK_SECRET.as_bytes(), format!("{ts}.{body}").as_bytes())
    );
    if sig != want {
        return StatusCode::UNAUTHORIZED;
    }
    g.webhook
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap());
    StatusCode::OK
}

async fn gateway() -> (Arc<Gateway>, String) {
    let g = Arc::new(Gateway::default());
    let app = Router::new()
        .route("/", get(aliyun))
        .route("/hook", post(webhook))
        .with_state(g.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (g, format!("http://{addr}"))
}

fn aliyun_config(base: &str, secret: &str) -> AliyunConfig {
    AliyunConfig {
        endpoint: format!("{base}/"),
        region: "cn-hangzhou".into(),
        access_key_id: KEY_ID.into(),
        access_key_secret: secret.into(),
        sign_name: "许昌市司法局".into(),
        template_codes: [
            ("task_opened", "SMS_100001"),
            ("reminder", "SMS_100002"),
            ("escalation", "SMS_100003"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    }
}

/// Starts a supervision letter: its first task opens for 李明 (mobile 13800000001).
async fn start_letter(engine: &Engine<SqlStore>, case: &str) -> String {
    common::start_letter(engine, None, case, "2025-09-26T10:00:00+08:00").await
}

async fn rows(engine: &Engine<SqlStore>, status: &str) -> Vec<OutboxRow> {
    common::rows(engine, status, "sms").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_reaches_the_aliyun_gateway_signed_with_its_out_id() {
    let (g, base) = gateway().await;
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path()).await;
    let id = start_letter(&engine, "许司督〔2025〕7号").await;
    let pending = rows(&engine, "pending").await;
    assert_eq!(pending.len(), 1, "task_opened goes by SMS too: {pending:?}");
    let sms = SmsNotifier::new(Provider::Aliyun(aliyun_config(&base, SECRET))).unwrap();
    let d = Dispatcher::new(engine.clone(), sms, NoPortal, Policy::default());
    let r = d.dispatch_due(Utc::now()).await.unwrap();
    assert_eq!((r.sent, r.retried, r.dead), (1, 0, 0));
    let got = g.received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let p = &got[0];
    let row = &pending[0];
    assert_eq!(p["OutId"], format!("duban.outbox.{}", row.id));
    assert_eq!(p["PhoneNumbers"], "13800000001");
    assert_eq!(p["TemplateCode"], "SMS_100001");
    assert_eq!(p["SignName"], "许昌市司法局");
    assert_eq!(
        (p["Action"].as_str(), p["Version"].as_str()),
        ("SendSms", "2017-05-25")
    );
    let tp: Value = serde_json::from_str(&p["TemplateParam"]).unwrap();
    assert_eq!(tp["case"], json!(id));
    assert_eq!(tp["task"], json!("起草并制发督办文书"), "{tp}");
    assert!(rows(&engine, "pending").await.is_empty());
    assert_eq!(rows(&engine, "sent").await.len(), 1);
    // Email rows are not the SMS dispatcher's: they wait for theirs.
    assert!(engine
        .store()
        .outbox(Some(OutboxStatus::Pending))
        .await
        .unwrap()
        .iter()
        .any(|r| r.kind == OutboxKind::Email));

    // The same row sent again carries the same OutId (a fresh nonce, as Aliyun wants).
    let m = d.message(row, Utc::now()).await.unwrap();
    let again = SmsNotifier::new(Provider::Aliyun(aliyun_config(&base, SECRET))).unwrap();
    again.send(&m).await.unwrap();
    let got = g.received.lock().unwrap().clone();
    assert_eq!(got[1]["OutId"], got[0]["OutId"]);
    assert_ne!(got[1]["SignatureNonce"], got[0]["SignatureNonce"]);
}

/// A request clock fixed to the published example's time and nonce.
struct Published;

impl RequestClock for Published {
    fn now(&self) -> DateTime<Utc> {
        at("2017-07-12T02:42:19Z")
    }
    fn nonce(&self) -> String {
        "45e25e9b-0a6f-4070-8c85-2956eda1b466".into()
    }
}

#[test]
fn duban_builds_the_published_example_request() {
    let cfg = AliyunConfig {
        endpoint: "http://dysmsapi.aliyuncs.com/".into(),
        region: "cn-hangzhou".into(),
        access_key_id: "testId".into(),
        access_key_secret: "testSecret".into(),
        sign_name: "阿里云短信测试专用".into(),
        template_codes: [("t".to_string(), "SMS_71390007".to_string())].into(),
    };
    let n = SmsNotifier::with_clock(Provider::Aliyun(cfg.clone()), Box::new(Published)).unwrap();
    let m = duban_notifiers::Message {
        key: "123".into(),
        template: "t".into(),
        to: vec![],
        subject: String::new(),
        text: String::new(),
        html: String::new(),
        sms: String::new(),
        sms_params: [("customer".to_string(), "test".to_string())].into(),
        attachments: vec![],
    };
    let mut p = n.aliyun_params(&cfg, &m, &["15300000001"]).unwrap();
    let want = params(PUBLISHED_QUERY);
    // duban asks for JSON answers; the example asks for XML. Everything else
    // is the example's, and with its format the signature is the example's.
    assert_eq!(p["Format"], "JSON");
    p.insert("Format".into(), "XML".into());
    p.remove("Signature");
    let mut want_unsigned = want.clone();
    want_unsigned.remove("Signature");
    assert_eq!(p, want_unsigned);
    assert_eq!(
        duban_notifiers::sms::aliyun_signature("GET", &p, "testSecret"),
        want["Signature"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_is_retried_and_a_bad_signature_is_dead() {
    let (g, base) = gateway().await;
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path()).await;
    start_letter(&engine, "1号").await;
    // Aliyun's flow control answers first: retried later, not dead.
    g.script
        .lock()
        .unwrap()
        .push_back("isv.BUSINESS_LIMIT_CONTROL");
    let policy = Policy::default();
    let sms = SmsNotifier::new(Provider::Aliyun(aliyun_config(&base, SECRET))).unwrap();
    let d = Dispatcher::new(engine.clone(), sms, NoPortal, policy.clone());
    // The store keeps milliseconds.
    let now = Utc::now()
        .duration_trunc(chrono::Duration::milliseconds(1))
        .unwrap();
    let r = d.dispatch_due(now).await.unwrap();
    assert_eq!((r.sent, r.retried, r.dead), (0, 1, 0));
    let p = rows(&engine, "pending").await;
    assert_eq!(p[0].next_attempt, now + policy.delay(1));
    assert!(p[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("isv.BUSINESS_LIMIT_CONTROL"));
    let r = d.dispatch_due(now + policy.delay(1)).await.unwrap();
    assert_eq!(r.sent, 1);

    // A wrong secret: the gateway refuses the signature, and retrying will not help.
    start_letter(&engine, "2号").await;
    let wrong = SmsNotifier::new(Provider::Aliyun(aliyun_config(&base, "not-the-secret"))).unwrap();
    let d = Dispatcher::new(engine.clone(), wrong, NoPortal, policy);
    let r = d.dispatch_due(Utc::now()).await.unwrap();
    assert_eq!((r.sent, r.dead), (0, 1));
    assert_eq!(*g.refused.lock().unwrap(), 1);
    let dead = rows(&engine, "dead").await;
    assert!(dead[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("SignatureDoesNotMatch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_provider_signs_its_body() {
    let (g, base) = gateway().await;
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path()).await;
    let id = start_letter(&engine, "1号").await;
    let hook = |secret: &str| {
        SmsNotifier::new(Provider::Webhook(WebhookConfig {
            url: format!("{base}/hook"),
            secret: secret.into(),
        }))
        .unwrap()
    };
    // A wrong key is refused (401): permanent, the row is dead.
    let d = Dispatcher::new(engine.clone(), hook("wrong"), NoPortal, Policy::default());
    assert_eq!(d.dispatch_due(Utc::now()).await.unwrap().dead, 1);
    assert!(g.webhook.lock().unwrap().is_empty());
    let dead = rows(&engine, "dead").await;
    assert!(engine
        .store()
        .outbox_retry(dead[0].id, Utc::now())
        .await
        .unwrap());
    // The right key: delivered, with the text and parameters.
    let d = Dispatcher::new(
        engine.clone(),
        hook(HOOK_SECRET),
        NoPortal,
        Policy::default(),
    );
    assert_eq!(d.dispatch_due(Utc::now()).await.unwrap().sent, 1);
    let got = g.webhook.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let b = &got[0];
    assert_eq!(b["id"], json!(format!("duban.outbox.{}", dead[0].id)));
    assert_eq!(b["to"], json!(["13800000001"]));
    assert_eq!(b["template"], json!("task_opened"));
    let text = b["text"].as_str().unwrap();
    assert!(
        text.starts_with("【督办】您有新任务“起草并制发督办文书”") && text.contains(&id),
        "{text}"
    );
    assert_eq!(b["params"]["case"], json!(id));
}
