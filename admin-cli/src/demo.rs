//! `duban serve --demo`: an example district to look at within a minute.
//!
//! On a store with no directory, the example directory (`demo/directory.yaml`,
//! compiled in, so it works from any folder) is imported; on a store with no
//! instances, three are started as staff would: a 督办函 issued to an agency
//! (its notice waits for an answer, its email in the outbox), a letter still
//! to be drafted (a task with a deadline for 李明), and a dispute between
//! two district agencies (a notice asking them to negotiate). Without a
//! `[portal]`, the portal runs on 127.0.0.1:8080 with a key kept beside the
//! database (`duban-demo.key`, made on first use), so the answer links work.
//! Then it prints where to look, and each open notice's answer link. A
//! store that already holds a directory or instances keeps them: nothing is
//! seeded twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use duban_engine::runtime::TaskKind;
use duban_engine::service::{Engine, ServiceError};
use duban_engine::store::{SqlStore, TaskFilter};
use duban_notifiers::config::PortalSettings;
use duban_notifiers::links::{LinkBuilder, SignedLinks};
use serde_json::json;

/// The example directory.
pub const DIRECTORY: &str = include_str!("../../demo/directory.yaml");

/// Where the demo's portal listens.
pub const LISTEN: &str = "127.0.0.1:8080";

/// The demo's portal: on [`LISTEN`], signing with a key kept in
/// `duban-demo.key` beside the database (made on first use), so links stay
/// valid across restarts.
pub fn portal(db_dir: &Path) -> Result<PortalSettings, String> {
    let file = db_dir.join("duban-demo.key");
    let key = match std::fs::read_to_string(&file) {
        Ok(k) if k.trim().len() >= 64 => k.trim().to_string(),
        _ => {
            let mut bytes = [0u8; 32];
            use std::io::Read as _;
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
                .map_err(|e| format!("no random source for the demo key: {e}"))?;
            let k: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&file, &k).map_err(|e| format!("{}: {e}", file.display()))?;
            k
        }
    };
    let links = SignedLinks::new(
        &format!("http://{LISTEN}"),
        "demo",
        [("demo".to_string(), key.into_bytes())].into(),
        Duration::days(60),
    )
    .ok_or("the demo key is empty")?;
    Ok(PortalSettings {
        listen: LISTEN.parse().expect("a socket address"),
        links,
    })
}

fn vars(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Imports the example directory into an empty store, and starts the
/// example instances when there are none; returns what it did.
pub async fn seed(
    engine: &Engine<SqlStore>,
    now: DateTime<Utc>,
) -> Result<Vec<String>, ServiceError> {
    let mut did = Vec::new();
    let empty = {
        let d = engine.directory();
        d.people.is_empty() && d.agencies.is_empty()
    };
    if empty {
        let dir = duban_engine::store::directory::parse(DIRECTORY, false)
            .map_err(|e| ServiceError::Io(format!("the demo directory: {e:?}")))?;
        let n = (dir.people.len(), dir.agencies.len());
        engine.import_directory(dir).await?;
        did.push(format!(
            "imported the example directory ({} people, {} agencies)",
            n.0, n.1
        ));
    }
    if !engine.instances(None, None).await?.is_empty() {
        return Ok(did);
    }
    let letter = engine
        .start(
            "supervision_letter",
            Some("XC"),
            vars(&[
                ("agency", json!("market_bureau")),
                ("problem", json!("未按规定在政府网站公示行政处罚决定")),
            ]),
            "li",
            now,
        )
        .await?;
    let draft = letter
        .state
        .open_tasks()
        .next()
        .map(|t| t.id.clone())
        .unwrap_or_default();
    engine
        .complete(
            &draft,
            "issue",
            vars(&[
                ("letter_kind", json!("督办函")),
                ("reply_period", json!("30日")),
            ]),
            "li",
            now,
        )
        .await?;
    did.push(format!(
        "instance {}: a 督办函 issued to 许昌市市场监督管理局, waiting for its answer",
        letter.state.id
    ));
    let second = engine
        .start(
            "supervision_letter",
            Some("XC"),
            vars(&[
                ("agency", json!("urban_bureau")),
                ("problem", json!("行政执法人员未出示执法证件")),
            ]),
            "li",
            now,
        )
        .await?;
    did.push(format!(
        "instance {}: a letter for 李明 to draft (起草并制发督办文书)",
        second.state.id
    ));
    let dispute = engine
        .start(
            "dispute",
            None,
            vars(&[
                ("applicant", json!("qiaoxi_urban")),
                ("respondent", json!("qiaoxi_env")),
                ("dispute_summary", json!("餐饮油烟污染的监管职责")),
            ]),
            "qiaoxi_coord",
            now,
        )
        .await?;
    did.push(format!(
        "instance {}: a dispute between two 桥西区 agencies, asked to negotiate",
        dispute.state.id
    ));
    Ok(did)
}

/// What to look at: the commands, the pages, and each open notice's answer
/// link.
/// `home` is the `--home` folder when one was given: the commands to try
/// then need it too.
pub async fn banner(
    engine: &Arc<Engine<SqlStore>>,
    links: &SignedLinks,
    did: &[String],
    home: Option<&std::path::Path>,
    documents: &std::path::Path,
) {
    let mut out = String::from("\nduban demo — an example district is running\n");
    for d in did {
        out.push_str(&format!("  {d}\n"));
    }
    match home {
        Some(h) => out.push_str(&format!(
            "\nWhere to look (in another terminal, after `export DUBAN_HOME={}`):\n",
            h.display()
        )),
        None => out.push_str("\nWhere to look (in another terminal, from this folder):\n"),
    }
    out.push_str(
        "\x20 duban instances            the running cases\n\
         \x20 duban tasks                open tasks and notices with their deadlines\n\
         \x20 duban show 1               one case: its timeline, deadlines and how they were counted\n\
         \x20 duban outbox               the emails and SMS waiting (without [email] and [sms] in duban.toml they stay there)\n",
    );
    out.push_str(&format!(
        "  ls {:<23} the documents rendered (督办函 …)\n",
        format!("{}/", documents.display())
    ));
    match engine.tasks(&TaskFilter::default()).await.map(|rows| {
        rows.into_iter()
            .filter(|r| r.kind == TaskKind::Notice)
            .collect::<Vec<_>>()
    }) {
        Ok(notices) if !notices.is_empty() => {
            out.push_str("\nAnswer a notice as the agency would, in a browser:\n");
            let dir = engine.directory();
            for n in notices {
                for a in &n.assignees {
                    let name = duban_engine::runtime::Directory::agency(dir.as_ref(), a)
                        .map_or_else(|| a.clone(), |x| x.name);
                    out.push_str(&format!(
                        "  {name}（{} {}）: {}\n",
                        n.instance,
                        n.step,
                        links.answer_link(&n.instance, &n.id, a)
                    ));
                }
            }
        }
        _ => {}
    }
    errln!("{out}");
}
