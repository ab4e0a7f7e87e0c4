//! `parallel` and `join`: a split walks every branch; a join waits until
//! as many branches arrived as the widest split that names it.

use crate::definition::StepKind;
use crate::runtime::apply::Run;
use crate::runtime::history::HistoryKind;

impl Run<'_> {
    pub(crate) fn enter_parallel(&mut self, id: &str, branches: &[String]) -> Vec<String> {
        let line = self
            .line("engine", HistoryKind::Split)
            .from(id)
            .note(branches.join(", "));
        self.record(line);
        branches.to_vec()
    }

    pub(crate) fn enter_join(&mut self, id: &str, next: &str) -> Vec<String> {
        // After an inclusive choice, as many as it took; otherwise the
        // widest split that names this join.
        let needed = self.state.join_expect.get(id).copied().unwrap_or_else(|| {
            self.def()
                .steps
                .values()
                .filter_map(|s| match &s.kind {
                    StepKind::Parallel { join, branches } if join == id => {
                        Some(branches.len() as u32)
                    }
                    _ => None,
                })
                .max()
                .unwrap_or(1)
        });
        let n = self.state.joins.entry(id.to_string()).or_default();
        *n += 1;
        if *n < needed {
            return Vec::new();
        }
        self.state.joins.remove(id);
        self.state.join_expect.remove(id);
        let line = self.line("engine", HistoryKind::Joined).from(id).to(next);
        self.record(line);
        vec![next.to_string()]
    }
}
