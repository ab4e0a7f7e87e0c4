//! The answer link of a notice: how an agency reaches the page where it
//! answers, without an account.
//!
//! The signed implementation comes with the answer portal; until then
//! [`NoPortal`] writes a plain sentence saying the portal is not enabled,
//! rather than a link that anyone could forge.

/// Builds the link an agency answers a notice through.
pub trait LinkBuilder {
    /// The link for `recipient` to answer task `task` of `instance`.
    fn answer_link(&self, instance: &str, task: &str, recipient: &str) -> String;
}

/// No portal yet: the link is a notice saying so.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPortal;

impl LinkBuilder for NoPortal {
    fn answer_link(&self, _instance: &str, task: &str, _recipient: &str) -> String {
        format!("（答复门户尚未启用，请联系监督机构办理，事项编号 {task}）")
    }
}
