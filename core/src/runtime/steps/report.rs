//! `report`: counts how the notices of a period were answered
//! ([`crate::runtime::reports`]) and stores the numbers in variables, for
//! a document to render (XT-15, XT-16).
//!
//! The notices come from [`Env::reports`](crate::runtime::Env::reports),
//! loaded by the service; a query it did not load fails the step with R037
//! and is noted, and the service applies the event again with it loaded.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::definition::{Step, StepKind, ValueType};
use crate::runtime::apply::Run;
use crate::runtime::error::EngineError;
use crate::runtime::history::HistoryKind;
use crate::runtime::reports::{tally, ReportQuery, Stats};
use crate::runtime::values;

impl Run<'_> {
    pub(crate) fn enter_report(
        &mut self,
        id: &str,
        step: &Step,
    ) -> Result<Vec<String>, EngineError> {
        let StepKind::Report {
            process,
            step: of_step,
            from,
            until,
            agency,
            into,
            next,
        } = &step.kind
        else {
            unreachable!("enter_report is given report steps")
        };
        let q = ReportQuery {
            process: process.clone(),
            step: of_step.clone(),
            from: self.temporal_var(id, from)?.date(),
            until: self.temporal_var(id, until)?.date(),
        };
        let rows = self
            .env
            .reports
            .notices(&q)
            .ok_or_else(|| EngineError::ReportNotLoaded(id.into()))?;
        let per = tally(&q, rows, self.now);
        let (stats, whose) = match agency {
            Some(a) => {
                let aid = match self.var(a) {
                    Some(Json::String(s)) => s.clone(),
                    _ => return Err(EngineError::MissingVariable(a.clone())),
                };
                let name = self
                    .env
                    .directory
                    .agency(&aid)
                    .map_or_else(|| aid.clone(), |x| x.name);
                (per.get(&aid).cloned().unwrap_or_default(), name)
            }
            None => (Stats::total(per.values()), "各单位".to_string()),
        };
        let mut changed = BTreeMap::new();
        for (measure, var) in into {
            let v = match (measure.as_str(), &self.def().variables[var].ty) {
                ("average_days", ValueType::String | ValueType::Text) => stats
                    .average_days()
                    .map_or(Json::Null, |d| Json::String(format!("{d:.1}"))),
                _ => stats.measure(measure),
            };
            if v.is_null() {
                self.state.variables.remove(var);
                changed.insert(var.clone(), Json::Null);
                continue;
            }
            let v = values::check(var, &self.def().variables[var], &v)?;
            self.state.variables.insert(var.clone(), v.clone());
            changed.insert(var.clone(), v);
        }
        let average = stats
            .average_days()
            .map_or_else(|| "无已答复".into(), |d| format!("平均{d:.1}日答复"));
        let note = format!(
            "统计{}至{}{whose}：发出{}件，答复{}件，按期{}件，逾期{}件，督办升级{}件，{average}",
            q.from.format("%Y年%-m月%-d日"),
            q.until.format("%Y年%-m月%-d日"),
            stats.opened,
            stats.answered,
            stats.on_time,
            stats.overdue,
            stats.escalated,
        );
        let line = self
            .line("engine", HistoryKind::Counted)
            .from(id)
            .to(next.clone())
            .changed(changed)
            .note(note);
        self.record(line);
        Ok(vec![next.clone()])
    }
}
