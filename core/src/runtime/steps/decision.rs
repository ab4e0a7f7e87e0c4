//! `decision`: the first branch whose `when` holds, else the default; with
//! `join:`, every branch that holds (an inclusive choice), met again at the
//! join, which then waits for as many arrivals as branches were taken.

use std::collections::BTreeMap;

use crate::definition::Branch;
use crate::runtime::apply::Run;
use crate::runtime::error::EngineError;
use crate::runtime::history::HistoryKind;

impl Run<'_> {
    pub(crate) fn enter_decision(
        &mut self,
        id: &str,
        branches: &[Branch],
        default: &str,
    ) -> Result<Vec<String>, EngineError> {
        let mut taken = None;
        for b in branches {
            if self.eval_bool(&b.when)? {
                taken = Some(b);
                break;
            }
        }
        let (target, note, changed) = match taken {
            Some(b) => {
                let changed = self.sets(&b.set)?;
                let note = match (&b.note, &b.rule) {
                    (Some(n), Some(r)) => format!("{} ({r}): {n}", b.when.source),
                    (Some(n), None) => format!("{}: {n}", b.when.source),
                    (None, Some(r)) => format!("{} ({r})", b.when.source),
                    (None, None) => b.when.source.clone(),
                };
                (b.goto.clone(), note, changed)
            }
            None => (default.to_string(), "default".into(), BTreeMap::new()),
        };
        let line = self
            .line("engine", HistoryKind::Decided)
            .from(id)
            .to(target.clone())
            .changed(changed)
            .note(note);
        self.record(line);
        if let Some(b) = taken {
            self.record_facts(&b.record, id, "engine")?;
        }
        Ok(vec![target])
    }

    pub(crate) fn enter_inclusive(
        &mut self,
        id: &str,
        branches: &[Branch],
        default: &str,
        join: &str,
    ) -> Result<Vec<String>, EngineError> {
        let mut taken = Vec::new();
        for b in branches {
            if self.eval_bool(&b.when)? {
                taken.push(b);
            }
        }
        let mut changed = BTreeMap::new();
        let mut notes = Vec::new();
        let mut targets = Vec::new();
        for b in &taken {
            changed.extend(self.sets(&b.set)?);
            notes.push(match &b.note {
                Some(n) => format!("{}: {n}", b.when.source),
                None => b.when.source.clone(),
            });
            targets.push(b.goto.clone());
        }
        if targets.is_empty() {
            targets.push(default.to_string());
            notes.push("default".into());
        }
        self.state
            .join_expect
            .insert(join.to_string(), targets.len() as u32);
        let line = self
            .line("engine", HistoryKind::Split)
            .from(id)
            .changed(changed)
            .note(format!("{} → {}", notes.join("; "), targets.join(", ")));
        self.record(line);
        for b in &taken {
            self.record_facts(&b.record, id, "engine")?;
        }
        Ok(targets)
    }
}
