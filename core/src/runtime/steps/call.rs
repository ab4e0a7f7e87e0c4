//! `call`: start a child instance of another process with inputs, wait for
//! it to end, and take its result. The child's id is fixed by the call
//! (`PARENT-STEP-REVISION`), so starting it again finds it taken.
//!
//! The child's start is tried here, inside the caller's transition, on the
//! latest definition of the called process ([`Env::processes`]): a child
//! that cannot start (a required input missing, a value of the wrong type,
//! the process not deployed, calls nested deeper than [`MAX_CALL_DEPTH`])
//! refuses the caller's event with it, so the caller never waits for a
//! child that does not exist. The runtime then starts the child for real
//! from the `StartChild` command.

use serde_json::Value as Json;

use crate::definition::{Step, StepKind};
use crate::runtime::apply::{Env, Run, MAX_CALL_DEPTH};
use crate::runtime::error::EngineError;
use crate::runtime::event::Command;
use crate::runtime::history::HistoryKind;
use crate::runtime::state::WaitState;

impl Run<'_> {
    pub(crate) fn enter_call(&mut self, id: &str, step: &Step) -> Result<Vec<String>, EngineError> {
        let child = self.start_call(id, step, None)?;
        if let StepKind::Call {
            wait: false, next, ..
        } = &step.kind
        {
            // Started to run on its own: not waited for, not cancelled
            // with this instance.
            return Ok(vec![next.clone()]);
        }
        self.state.waits.insert(
            id.into(),
            WaitState {
                step: id.into(),
                message: None,
                child: Some(child),
                children: Vec::new(),
                since: Some(self.now),
                deadline: None,
            },
        );
        self.schedule_call_deadline(id, step)?;
        Ok(Vec::new())
    }

    /// Schedules the deadline of call step `id`, if it has one, on its wait.
    pub(crate) fn schedule_call_deadline(
        &mut self,
        id: &str,
        step: &Step,
    ) -> Result<(), EngineError> {
        if let StepKind::Call {
            deadline: Some(d), ..
        } = &step.kind
        {
            let start = self.start_of(id, d, None)?;
            let kind = crate::runtime::state::TimerKind::MessageTimeout { step: id.into() };
            let computed = self.schedule_wait(id, d, start, kind)?;
            let line = self
                .line("engine", HistoryKind::Waiting)
                .to(id)
                .deadline(Some(computed))
                .note("waiting for the called process".to_string());
            self.record(line);
        }
        Ok(())
    }

    /// Starts the child of call step `id` (for item `item` of a
    /// `for_each` call: `PARENT-STEP-REVISION-N`, N counted from 1) and
    /// returns its id; the caller records the wait.
    pub(crate) fn start_call(
        &mut self,
        id: &str,
        step: &Step,
        item: Option<u32>,
    ) -> Result<String, EngineError> {
        let StepKind::Call {
            process,
            profile,
            inputs,
            ..
        } = &step.kind
        else {
            unreachable!("start_call is given call steps")
        };
        let mut vars = std::collections::BTreeMap::new();
        for (k, e) in inputs {
            // An input that is unset here (an optional variable) is not
            // given: the child takes its default, or goes without.
            match self.eval(e)? {
                Json::Null => {}
                v => {
                    vars.insert(k.clone(), v);
                }
            }
        }
        // The revision this transition will have (it is raised at the end).
        let mut child = format!("{}-{id}-{}", self.state.id, self.state.revision + 1);
        if let Some(i) = item {
            child = format!("{child}-{}", i + 1);
        }
        let depth = self.state.depth + 1;
        // Without `profile:`, a child runs under the caller's profile when
        // the called process has one of that name (a 邢台 case calls a 邢台
        // child), else under its own default.
        let profile = profile.clone().or_else(|| {
            self.state.profile.clone().filter(|p| {
                self.env
                    .processes
                    .latest(process)
                    .is_ok_and(|d| d.profiles.contains_key(p))
            })
        });
        let version = self.try_start(id, process, profile.as_deref(), &child, &vars, depth)?;
        self.commands.push(Command::StartChild {
            child: child.clone(),
            step: id.into(),
            process: process.clone(),
            profile,
            variables: vars,
            depth,
            version: Some(version),
        });
        let line = self
            .line("engine", HistoryKind::Called)
            .to(id)
            .note(format!("started {process} ({child})"));
        self.record(line);
        Ok(child)
    }

    /// Starts the child on a throwaway copy, to refuse the call now if it
    /// cannot start; returns the version tried, which the real start uses.
    /// A child whose own first steps call further is tried with them, down
    /// to [`MAX_CALL_DEPTH`].
    fn try_start(
        &self,
        step: &str,
        process: &str,
        profile: Option<&str>,
        child: &str,
        vars: &std::collections::BTreeMap<String, Json>,
        depth: u32,
    ) -> Result<u32, EngineError> {
        if depth > MAX_CALL_DEPTH {
            return Err(EngineError::CallTooDeep {
                step: step.into(),
                process: process.into(),
                depth,
                max: MAX_CALL_DEPTH,
            });
        }
        let cannot = |why: String| EngineError::CallCannotStart {
            step: step.into(),
            process: process.into(),
            why,
        };
        let definition = self.env.processes.latest(process).map_err(cannot)?;
        let env = Env {
            definition,
            calendar: self.env.calendar,
            directory: self.env.directory,
            processes: self.env.processes,
            call_depth: depth,
            facts: self.env.facts,
            reports: self.env.reports,
        };
        match Run::start(&env, child, profile, vars, "engine", self.now) {
            Ok(_) => Ok(definition.version),
            // A recursion without end is said once, where it is stopped,
            // not wrapped sixteen times.
            Err(e @ EngineError::CallTooDeep { .. }) => Err(e),
            // A grandchild that cannot start: the chain of calls is named.
            Err(e) => Err(cannot(e.to_string())),
        }
    }

    pub(crate) fn child_ended(
        &mut self,
        step: &str,
        result: &str,
        child: Option<&str>,
        variables: &std::collections::BTreeMap<String, Json>,
    ) -> Result<(), EngineError> {
        if !self.state.waits.contains_key(step) {
            return Err(EngineError::NotWaitingForChild(step.into()));
        }
        let StepKind::Call {
            result: var,
            next,
            outputs,
            ..
        } = &self.def().steps[step].kind
        else {
            return Err(EngineError::NotWaitingForChild(step.into()));
        };
        if self.state.for_each.contains_key(step) {
            return self.item_child_ended(step, result, child);
        }
        let mut changed = std::collections::BTreeMap::new();
        if let Some(v) = var {
            changed.insert(v.clone(), Json::String(result.into()));
            self.state
                .variables
                .insert(v.clone(), Json::String(result.into()));
        }
        // The child's variables `outputs:` names, checked as ours.
        for (ours, theirs) in outputs {
            if let Some(v) = variables.get(theirs).filter(|v| !v.is_null()) {
                let v = crate::runtime::values::check(ours, &self.def().variables[ours], v)?;
                self.in_profile(ours, &v)?;
                self.state.variables.insert(ours.clone(), v.clone());
                changed.insert(ours.clone(), v);
            }
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

    /// A child of a `for_each` call ended: its item is done.
    fn item_child_ended(
        &mut self,
        step: &str,
        result: &str,
        child: Option<&str>,
    ) -> Result<(), EngineError> {
        let index = child.and_then(|c| {
            self.state
                .for_each
                .get_mut(step)
                .and_then(|f| f.children.remove(c))
        });
        let (Some(child), Some(index)) = (child, index) else {
            return Err(EngineError::NotWaitingForChild(step.into()));
        };
        if let Some(w) = self.state.waits.get_mut(step) {
            w.children.retain(|c| c != child);
        }
        let line = self
            .line("engine", HistoryKind::ChildEnded)
            .from(step)
            .note(format!("result {result} ({child})"));
        self.record(line);
        for next in self.item_done(step, index, result, Default::default())? {
            self.enter(&next)?;
        }
        Ok(())
    }
}
