//! `end`: the instance completes with a result; its documents are rendered.

use crate::runtime::apply::Run;
use crate::runtime::history::HistoryKind;
use crate::runtime::state::Status;

impl Run<'_> {
    pub(crate) fn enter_end(
        &mut self,
        id: &str,
        name: &str,
        result: &str,
        documents: &[String],
    ) -> Vec<String> {
        for d in documents {
            self.issue_document(d, id, None);
        }
        self.finish(
            Status::Completed {
                result: result.into(),
            },
            "engine",
            HistoryKind::Ended,
            Some(format!("{name} ({result})")),
        );
        Vec::new()
    }
}
