//! `for_each`: a task, notice or call run once per item of a list
//! (BPMN's multi-instance).
//!
//! Entering the step takes the list as it is then ([`ForEachState::items`])
//! and opens every item at once (`parallel`) or the first (`sequential`).
//! Each item is a task, a notice or a child instance of its own, with its
//! own assignee, deadline and documents; while one item is worked on, the
//! step's `as` variable reads as that item ([`Run::item`]), so its
//! assignee, period, guards, `set:`, call inputs and templates see it,
//! while the instance's variable itself does not change. When an item
//! finishes, its outcome (a child's result) and fields are kept, the
//! `collect` lists are rebuilt in item order, and the step is done when
//! every item has finished or `complete_when` holds; items still open then
//! are closed with the outcome `not_needed` (children are cancelled), and
//! the step goes on to its `next`.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::definition::{Collect, CompleteWhen, ForEach, Step, StepKind};
use crate::runtime::apply::Run;
use crate::runtime::error::EngineError;
use crate::runtime::event::Command;
use crate::runtime::history::HistoryKind;
use crate::runtime::state::{ForEachState, Item, ItemResult, WaitState};

/// The outcome of items closed because the step was done without them.
pub const NOT_NEEDED: &str = "not_needed";

impl Run<'_> {
    pub(crate) fn enter_for_each(
        &mut self,
        id: &str,
        step: &Step,
        fe: &ForEach,
    ) -> Result<Vec<String>, EngineError> {
        if self.state.for_each.contains_key(id) {
            return Err(EngineError::ForEachRunning(id.into()));
        }
        let items = match self.state.variables.get(&fe.items) {
            Some(Json::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let total = items.len();
        self.state.for_each.insert(
            id.into(),
            ForEachState {
                items,
                ..Default::default()
            },
        );
        if matches!(step.kind, StepKind::Call { .. }) {
            self.state.waits.insert(
                id.into(),
                WaitState {
                    step: id.into(),
                    message: None,
                    child: None,
                    children: Vec::new(),
                    since: Some(self.now),
                    deadline: None,
                },
            );
        }
        let order = if fe.sequential {
            "依次办理"
        } else {
            "同时办理"
        };
        let line = self
            .line("engine", HistoryKind::Split)
            .from(id)
            .note(format!("{}：共{total}项，{order}", fe.items));
        self.record(line);
        if total == 0 {
            return self.for_each_done(id, step, fe);
        }
        if let StepKind::Call { wait: false, .. } = step.kind {
            // One child per item, each to run on its own: started, and
            // the step goes on at once.
            for index in 0..total as u32 {
                let value = self.state.for_each[id].items[index as usize].clone();
                self.item = Some(Item {
                    var: fe.var.clone(),
                    index,
                    value,
                });
                let started = self.start_call(id, step, Some(index));
                self.item = None;
                started?;
            }
            self.state.waits.remove(id);
            self.state.for_each.remove(id);
            let next = step_next(step);
            let line = self
                .line("engine", HistoryKind::Joined)
                .from(id)
                .to(next.clone())
                .note(format!("已逐项启动：共{total}项"));
            self.record(line);
            return Ok(vec![next]);
        }
        if matches!(step.kind, StepKind::Call { .. }) {
            self.schedule_call_deadline(id, step)?;
        }
        let first = if fe.sequential { 1 } else { total };
        for index in 0..first {
            self.open_item(id, step, fe, index as u32)?;
        }
        Ok(Vec::new())
    }

    /// Opens item `index` of step `id`: its task, notice or child.
    fn open_item(
        &mut self,
        id: &str,
        step: &Step,
        fe: &ForEach,
        index: u32,
    ) -> Result<(), EngineError> {
        let f = self.state.for_each.get_mut(id).expect("entered");
        f.opened = f.opened.max(index + 1);
        let value = f.items[index as usize].clone();
        self.item = Some(Item {
            var: fe.var.clone(),
            index,
            value,
        });
        let r = match &step.kind {
            StepKind::Task { .. } => self.enter_task(id, step).map(drop),
            StepKind::Notice { .. } => self.enter_notice(id, step).map(drop),
            StepKind::Call { .. } => self.start_call(id, step, Some(index)).map(|child| {
                if let Some(w) = self.state.waits.get_mut(id) {
                    w.children.push(child.clone());
                }
                if let Some(f) = self.state.for_each.get_mut(id) {
                    f.children.insert(child, index);
                }
            }),
            _ => unreachable!("for_each is checked to be on tasks, notices and calls"),
        };
        self.item = None;
        r
    }

    /// Item `index` of step `id` finished with `outcome`: collects it, and
    /// returns the step to go on to when the step is done.
    pub(crate) fn item_done(
        &mut self,
        id: &str,
        index: u32,
        outcome: &str,
        fields: BTreeMap<String, Json>,
    ) -> Result<Vec<String>, EngineError> {
        let step = &self.def().steps[id];
        let fe = step
            .for_each
            .as_ref()
            .expect("items belong to for_each steps");
        let f = self
            .state
            .for_each
            .get_mut(id)
            .ok_or_else(|| EngineError::NotWaitingForChild(id.into()))?;
        f.results.push(ItemResult {
            index,
            outcome: outcome.into(),
            fields,
        });
        let (finished, total, opened) = (f.results.len(), f.items.len(), f.opened as usize);
        let changed = self.collect(id, fe);
        // What the item changed is said on the line that finished it.
        if let Some(line) = self.history.last_mut() {
            line.changed.extend(changed);
        }
        let done = finished == total
            || match &fe.complete_when {
                CompleteWhen::All => false,
                CompleteWhen::AtLeast(n) => finished >= *n as usize,
                CompleteWhen::Condition(e) => self.eval_bool(e)?,
            };
        if done {
            return self.for_each_done(id, step, fe);
        }
        if fe.sequential && opened < total {
            self.open_item(id, step, fe, opened as u32)?;
        }
        Ok(Vec::new())
    }

    /// Rebuilds the `collect` lists of step `id` from its finished items,
    /// in item order; returns them.
    fn collect(&mut self, id: &str, fe: &ForEach) -> BTreeMap<String, Json> {
        let f = &self.state.for_each[id];
        let mut results: Vec<&ItemResult> = f.results.iter().collect();
        results.sort_by_key(|r| r.index);
        let mut out = BTreeMap::new();
        for (target, what) in &fe.collect {
            let list: Vec<Json> = results
                .iter()
                .filter_map(|r| match what {
                    Collect::Outcome(o) => {
                        (&r.outcome == o).then(|| f.items[r.index as usize].clone())
                    }
                    Collect::Field(name) => r.fields.get(name).cloned(),
                })
                .collect();
            out.insert(target.clone(), Json::Array(list));
        }
        self.state.variables.extend(out.clone());
        out
    }

    /// The step is done: what is still open is closed, the lists are
    /// final, and it goes on to its `next`.
    fn for_each_done(
        &mut self,
        id: &str,
        step: &Step,
        fe: &ForEach,
    ) -> Result<Vec<String>, EngineError> {
        let changed = self.collect(id, fe);
        let f = self.state.for_each.remove(id).expect("entered");
        let open: Vec<String> = self
            .state
            .open_tasks()
            .filter(|t| t.step == id && t.item.is_some())
            .map(|t| t.id.clone())
            .collect();
        for t in &open {
            self.close_task(t, NOT_NEEDED, "engine");
        }
        for child in f.children.keys() {
            self.commands.push(Command::CancelChild {
                child: child.clone(),
                reason: format!("{}（{id}）已办结，不再需要此项", step.name),
                actor: "engine".into(),
            });
        }
        if matches!(step.kind, StepKind::Call { .. }) {
            self.end_wait(id);
        }
        let next = step_next(step);
        let rest = f.items.len() - f.results.len();
        let mut note = format!("逐项办理完毕：{}/{}项", f.results.len(), f.items.len());
        if rest > 0 {
            note.push_str(&format!("，其余{rest}项不再办理"));
        }
        let line = self
            .line("engine", HistoryKind::Joined)
            .from(id)
            .to(next.clone())
            .changed(changed)
            .note(note);
        self.record(line);
        Ok(vec![next])
    }
}

/// Where a `for_each` step goes once it is done: a call's `next`, or a
/// task's or notice's (every outcome of one carries the step's `next`).
fn step_next(step: &Step) -> String {
    match &step.kind {
        StepKind::Call { next, .. } => next.clone(),
        StepKind::Task { outcomes, .. } | StepKind::Notice { outcomes, .. } => outcomes
            .values()
            .next()
            .map(|o| o.next.clone())
            .expect("a task has outcomes"),
        _ => unreachable!("for_each is checked to be on tasks, notices and calls"),
    }
}
