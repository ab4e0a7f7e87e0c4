//! `call`: start a child instance of another process with inputs, wait for
//! it to end, and take its result. The child's id is fixed by the call
//! (`PARENT-STEP-REVISION`), so starting it again finds it taken.

use serde_json::Value as Json;

use crate::definition::{Step, StepKind};
use crate::runtime::apply::Run;
use crate::runtime::error::EngineError;
use crate::runtime::event::Command;
use crate::runtime::history::HistoryKind;
use crate::runtime::state::WaitState;

impl Run<'_> {
    pub(crate) fn enter_call(&mut self, id: &str, step: &Step) -> Result<Vec<String>, EngineError> {
        let StepKind::Call {
            process,
            profile,
            inputs,
            ..
        } = &step.kind
        else {
            unreachable!("enter_call is given call steps")
        };
        let mut vars = std::collections::BTreeMap::new();
        for (k, e) in inputs {
            vars.insert(k.clone(), self.eval(e)?);
        }
        // The revision this transition will have (it is raised at the end).
        let child = format!("{}-{id}-{}", self.state.id, self.state.revision + 1);
        self.state.waits.insert(
            id.into(),
            WaitState {
                step: id.into(),
                message: None,
                child: Some(child.clone()),
                since: Some(self.now),
                deadline: None,
            },
        );
        self.commands.push(Command::StartChild {
            child,
            step: id.into(),
            process: process.clone(),
            profile: profile.clone(),
            variables: vars,
        });
        let line = self
            .line("engine", HistoryKind::Called)
            .to(id)
            .note(format!("started {process}"));
        self.record(line);
        Ok(Vec::new())
    }

    pub(crate) fn child_ended(&mut self, step: &str, result: &str) -> Result<(), EngineError> {
        if !self.state.waits.contains_key(step) {
            return Err(EngineError::NotWaitingForChild(step.into()));
        }
        let StepKind::Call {
            result: var, next, ..
        } = &self.def().steps[step].kind
        else {
            return Err(EngineError::NotWaitingForChild(step.into()));
        };
        let mut changed = std::collections::BTreeMap::new();
        if let Some(v) = var {
            changed.insert(v.clone(), Json::String(result.into()));
            self.state
                .variables
                .insert(v.clone(), Json::String(result.into()));
        }
        self.end_wait(step);
        let line = self
            .line("engine", HistoryKind::ChildEnded)
            .from(step)
            .to(next.clone())
            .changed(changed)
            .note(format!("result {result}"));
        self.record(line);
        self.enter(&next.clone())
    }
}
