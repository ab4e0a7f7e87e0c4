//! Rendering a notification from its template and the instance.
//!
//! The context is the process's variables (agencies and people as records)
//! and the built-ins of `docs/process-language.md`. The validator has
//! already refused templates that name anything else. The plain-text body
//! is rendered without escaping; the HTML body with every value escaped.

use chrono::{DateTime, Utc};
use duban_engine::calendar::LEGAL_TZ;
use duban_engine::definition::{Definition, Template, ValueType};
use duban_engine::runtime::{values, Directory, InstanceState, TaskState};
use handlebars::Handlebars;
use serde_json::{json, Map, Value as Json};

pub use duban_typeset::Official;

use crate::Recipient;

/// What a message is about.
pub struct Subject<'a> {
    /// The definition the instance runs on.
    pub definition: &'a Definition,
    /// The instance.
    pub state: &'a InstanceState,
    /// The step concerned, if any.
    pub step: Option<&'a str>,
    /// The task concerned, if any.
    pub task: Option<&'a TaskState>,
    /// The (first) recipient.
    pub recipient: Option<&'a Recipient>,
    /// The answer link for that recipient.
    pub answer_link: String,
    /// The instant of rendering.
    pub now: DateTime<Utc>,
}

fn record(ty: &ValueType, v: &Json, dir: &dyn Directory) -> Json {
    match (ty, v) {
        (ValueType::Agency, Json::String(id)) => dir
            .agency(id)
            .and_then(|a| serde_json::to_value(a).ok())
            .unwrap_or_else(|| json!({ "id": id, "name": id })),
        (ValueType::Person, Json::String(id)) => dir
            .person(id)
            .and_then(|p| serde_json::to_value(p).ok())
            .unwrap_or_else(|| json!({ "id": id, "name": id })),
        (ValueType::List(inner), Json::Array(items)) => {
            Json::Array(items.iter().map(|x| record(inner, x, dir)).collect())
        }
        _ => v.clone(),
    }
}

/// The data a template is rendered with.
pub fn context(s: &Subject<'_>, dir: &dyn Directory) -> Json {
    let def = s.definition;
    let mut ctx = Map::new();
    for (name, var) in &def.variables {
        if let Some(v) = s.state.variables.get(name) {
            ctx.insert(name.clone(), record(&var.ty, v, dir));
        }
    }
    let profile: Map<String, Json> = s
        .state
        .profile
        .as_ref()
        .and_then(|p| def.profiles.get(p))
        .map(|p| {
            p.values
                .iter()
                .map(|(k, v)| (k.clone(), values::to_json(v)))
                .collect()
        })
        .unwrap_or_else(|| {
            def.parameters
                .iter()
                .filter_map(|(k, p)| p.default.as_ref().map(|d| (k.clone(), values::to_json(d))))
                .collect()
        });
    let step_name = |id: &str| {
        def.steps
            .get(id)
            .map(|st| st.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    ctx.insert(
        "process".into(),
        json!({ "id": def.id, "name": def.name, "version": def.version }),
    );
    ctx.insert("instance".into(), json!({ "id": s.state.id }));
    ctx.insert("profile".into(), Json::Object(profile));
    if let Some(step) = s.step {
        ctx.insert(
            "step".into(),
            json!({ "id": step, "name": step_name(step) }),
        );
    }
    // An item of a `for_each` step reads its own item in the `as` variable.
    if let Some(item) = s.task.and_then(|t| t.item.as_ref()) {
        if let Some(var) = def.variables.get(&item.var) {
            ctx.insert(item.var.clone(), record(&var.ty, &item.value, dir));
        }
    }
    match s.task {
        Some(t) => {
            ctx.insert(
                "task".into(),
                json!({ "id": t.id, "step": t.step, "name": step_name(&t.step) }),
            );
            let deadline = t.deadline.as_ref().map_or(Json::Null, |d| {
                json!({ "last_day": d.last_day.to_string(), "deadline": d.deadline.to_rfc3339(), "explanation": d.explanation })
            });
            ctx.insert("deadline".into(), deadline);
        }
        None => {
            ctx.insert("deadline".into(), Json::Null);
        }
    }
    if let Some(r) = s.recipient {
        let r = serde_json::to_value(r).unwrap_or(Json::Null);
        ctx.insert("assignee".into(), r.clone());
        ctx.insert("recipient".into(), r);
    }
    ctx.insert("answer_link".into(), json!(s.answer_link));
    let local = s.now.with_timezone(&LEGAL_TZ);
    ctx.insert(
        "today".into(),
        json!(local.format("%Y年%-m月%-d日").to_string()),
    );
    ctx.insert("now".into(), json!(local.to_rfc3339()));
    Json::Object(ctx)
}

/// A rendered template.
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// HTML, values escaped.
    pub html: String,
    /// The SMS text.
    pub sms: String,
    /// The SMS gateway template's parameters.
    pub sms_params: std::collections::BTreeMap<String, String>,
}

/// Renders `t` with `ctx`.
pub fn render(t: &Template, ctx: &Json) -> Result<Rendered, String> {
    let mut plain = Handlebars::new();
    plain.register_escape_fn(handlebars::no_escape);
    let html = Handlebars::new();
    let subject = plain
        .render_template(t.subject.as_deref().unwrap_or("督办通知"), ctx)
        .map_err(|e| e.to_string())?;
    let text = plain
        .render_template(&t.body, ctx)
        .map_err(|e| e.to_string())?;
    let escaped = html
        .render_template(&t.body, ctx)
        .map_err(|e| e.to_string())?;
    let body: String = escaped.lines().collect::<Vec<_>>().join("<br>\n");
    let html = format!("<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"></head><body>\n{body}\n</body></html>\n");
    let subject = subject.trim().to_string();
    let sms = match &t.sms {
        Some(s) => plain
            .render_template(s, ctx)
            .map_err(|e| e.to_string())?
            .trim()
            .to_string(),
        None => subject.clone(),
    };
    let mut sms_params = std::collections::BTreeMap::new();
    for (k, v) in &t.sms_params {
        let r = plain.render_template(v, ctx).map_err(|e| e.to_string())?;
        sms_params.insert(k.clone(), r.trim().to_string());
    }
    Ok(Rendered {
        subject,
        text,
        html,
        sms,
        sms_params,
    })
}

/// Renders the parts of document `doc` with `ctx`: its title (itself a
/// template, `行政执法监督{{letter_kind}}` follows the letter issued), its
/// number (the value of its series' variable), addressee, body, attachments,
/// issuer and date (the day of rendering, the day it is issued), in the
/// order and with the layout its PDF is typeset in.
pub fn document_parts(
    def: &Definition,
    doc: &duban_engine::definition::Document,
    profile: Option<&str>,
    ctx: &Json,
) -> Result<Official, String> {
    let t = def
        .templates
        .get(&doc.template)
        .ok_or_else(|| format!("template `{}` is missing", doc.template))?;
    let plain = plain();
    let text = |t: &str| -> Result<String, String> {
        plain
            .render_template(t, ctx)
            .map(|t| t.trim().to_string())
            .map_err(|e| e.to_string())
    };
    let optional = |t: &Option<String>| -> Result<Option<String>, String> {
        Ok(match t {
            Some(t) => Some(text(t)?).filter(|t| !t.is_empty()),
            None => None,
        })
    };
    let number = doc
        .number
        .as_ref()
        .and_then(|series| ctx.get(series))
        .and_then(Json::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let issuer = optional(&doc.issuer)?;
    Ok(Official {
        layout: def.layout_of(doc, profile),
        kind: doc.kind.clone(),
        title: document_title(doc, ctx)?,
        number,
        // The layout adds the colon: one typed in the field is not doubled.
        to: optional(&doc.to)?.map(|t| t.trim_end_matches(['：', ':']).to_string()),
        body: text(&t.body)?,
        attachments: doc
            .attachments
            .iter()
            .map(|a| text(a))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect(),
        date: issuer
            .as_ref()
            .and_then(|_| ctx.get("today").and_then(Json::as_str).map(str::to_string)),
        issuer,
    })
}

/// A document's parts as plain text, and a printable HTML page titled with
/// the document's title, in the order of the 公文 (title, 发文字号, 主送机关,
/// 正文, 附件, 署名, 成文日期). The title is the result's `subject`.
pub fn compose(d: &Official) -> Rendered {
    let mut lines: Vec<String> = vec![d.title.clone()];
    if let Some(n) = &d.number {
        lines.push(n.clone());
    }
    lines.push(String::new());
    if let Some(to) = &d.to {
        lines.push(format!("{to}："));
    }
    lines.push(d.body.clone());
    if !d.attachments.is_empty() {
        lines.push(String::new());
        for (i, a) in d.attachments.iter().enumerate() {
            let label = if i == 0 { "附件：" } else { "　　　" };
            if d.attachments.len() == 1 {
                lines.push(format!("{label}{a}"));
            } else {
                lines.push(format!("{label}{}. {a}", i + 1));
            }
        }
    }
    if let Some(issuer) = &d.issuer {
        lines.push(String::new());
        lines.push(issuer.clone());
        if let Some(date) = &d.date {
            lines.push(date.clone());
        }
    }
    let text = lines.join("\n") + "\n";
    let body: String = handlebars::html_escape(&text)
        .lines()
        .collect::<Vec<_>>()
        .join("<br>\n");
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{}</title></head><body>\n{body}\n</body></html>\n",
        handlebars::html_escape(&d.title)
    );
    Rendered {
        subject: d.title.clone(),
        text,
        html,
        sms: d.title.clone(),
        sms_params: Default::default(),
    }
}

fn plain() -> Handlebars<'static> {
    let mut plain = Handlebars::new();
    plain.register_escape_fn(handlebars::no_escape);
    plain
}

/// The title of `doc` rendered with `ctx` (plain text).
pub fn document_title(
    doc: &duban_engine::definition::Document,
    ctx: &Json,
) -> Result<String, String> {
    if !doc.title.contains("{{") {
        return Ok(doc.title.clone());
    }
    let mut plain = Handlebars::new();
    plain.register_escape_fn(handlebars::no_escape);
    plain
        .render_template(&doc.title, ctx)
        .map(|t| t.trim().to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_values_and_text_does_not() {
        let t = Template {
            subject: Some("关于{{name}}".into()),
            body: "内容：{{name}}\n第二行".into(),
            sms: None,
            sms_params: Default::default(),
        };
        let r = render(&t, &json!({ "name": "<b>某局</b>" })).unwrap();
        assert_eq!(r.subject, "关于<b>某局</b>");
        assert_eq!(r.text, "内容：<b>某局</b>\n第二行");
        assert!(
            r.html.contains("内容：&lt;b&gt;某局&lt;/b&gt;<br>\n第二行"),
            "{}",
            r.html
        );
    }
}
