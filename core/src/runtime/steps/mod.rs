//! The step kinds, one file each: what entering a step does, and the
//! events that step kind takes.
//!
//! [`Run::enter`] walks from a step through the automatic ones (decision,
//! parallel, join, end) until every path stops at a step that waits (task,
//! notice, wait_message, wait_timer, call). Each kind's `enter_…` returns
//! the steps to walk on to. Adding a step kind is a new file here and an
//! arm in the match below.

mod call;
mod decision;
mod end;
mod for_each;
mod parallel;
mod recusal;
mod report;
mod send;
mod task;
mod wait;

use std::collections::VecDeque;

use super::apply::Run;
use super::error::EngineError;
use super::state::Status;
use crate::definition::StepKind;

/// A loop of automatic steps that never waits is a definition bug; stop it.
const STEP_BUDGET: usize = 10_000;

impl Run<'_> {
    /// Enters `first` and every automatic step that follows.
    pub(crate) fn enter(&mut self, first: &str) -> Result<(), EngineError> {
        let mut queue = VecDeque::from([first.to_string()]);
        let mut budget = STEP_BUDGET;
        while let Some(id) = queue.pop_front() {
            if self.state.status != Status::Running {
                break;
            }
            budget -= 1;
            if budget == 0 {
                return Err(EngineError::AutomaticLoop(id));
            }
            let step = &self.def().steps[&id];
            if let Some(fe) = &step.for_each {
                queue.extend(self.enter_for_each(&id, step, fe)?);
                continue;
            }
            let next = match &step.kind {
                StepKind::Task { .. } => self.enter_task(&id, step)?,
                StepKind::Notice { .. } => self.enter_notice(&id, step)?,
                StepKind::Decision {
                    branches,
                    default,
                    join: None,
                } => self.enter_decision(&id, branches, default)?,
                StepKind::Decision {
                    branches,
                    default,
                    join: Some(join),
                } => self.enter_inclusive(&id, branches, default, join)?,
                StepKind::Parallel { branches, .. } => self.enter_parallel(&id, branches),
                StepKind::Join { next } => self.enter_join(&id, next),
                StepKind::Call { .. } => self.enter_call(&id, step)?,
                StepKind::SendMessage { .. } => self.enter_send_message(&id, step)?,
                StepKind::Report { .. } => self.enter_report(&id, step)?,
                StepKind::WaitMessage { .. } => self.enter_wait_message(&id, step)?,
                StepKind::WaitTimer { timer, .. } => self.enter_wait_timer(&id, timer)?,
                StepKind::End { result, documents } => {
                    self.enter_end(&id, &step.name, result, documents)
                }
            };
            queue.extend(next);
        }
        Ok(())
    }
}
