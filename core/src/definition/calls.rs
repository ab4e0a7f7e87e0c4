//! The contract between a `call` step and the process it calls.
//!
//! At run time a call starts its child with the inputs it computes, and the
//! child's start is refused for a variable it does not declare, a required
//! one left out, a value of the wrong type or a profile it does not have;
//! when the child ends, its end result is stored, as a text and unchecked,
//! in the caller's `result:` variable. Those refusals would come at the worst
//! moment, in the middle of a case, so the validator checks each call
//! against the called process instead (E030, E031, E032, E034, E021).
//!
//! The called process is another file of the library. [`load_library`]
//! reads the [`ProcessInterface`] of every file, and of the context files
//! beside them, *leniently* from the text before anything is checked (as
//! it peeks at their ids): a caller is checked against a callee whose own
//! file has problems, and what cannot be read is not judged.
//!
//! [`load_library`]: super::load_library

use indexmap::IndexMap;
use marked_yaml::Node;

use super::check::Checker;
use super::diagnostic::{suggest, Code};
use super::model::*;
use super::raw::RawCall;
use super::source::Path;
use super::typing::a_type;
use super::values::quiet_type;

/// What a caller needs to know of a process: the variables it can be given,
/// its profiles and its end results. `None` where that part of its text
/// cannot be read (it is then not checked).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessInterface {
    /// The declared variables, in file order.
    pub variables: Option<IndexMap<String, InterfaceVariable>>,
    /// The declared profile ids.
    pub profiles: Option<Vec<String>>,
    /// The `result:` ids of its `end` steps, in file order.
    pub results: Option<Vec<String>>,
    /// The messages its `wait_message` steps wait for.
    pub messages: Vec<String>,
    /// The facts its `record:` entries record (outcomes, decision branches).
    pub facts: Vec<String>,
    /// Its `notice` steps, which a `report` may count.
    pub notice_steps: Vec<String>,
}

/// A variable as a caller sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceVariable {
    /// Its type; `None` when it cannot be read.
    pub ty: Option<ValueType>,
    /// `required: true` without a `default`: a start without it is refused.
    pub required: bool,
}

/// The id and interface of a definition text, read leniently; `None` when
/// the text has no readable `id:`.
pub fn peek_interface(text: &str) -> Option<(String, ProcessInterface)> {
    let node = crate::yaml::parse(text, Default::default()).ok()?;
    let top = node.as_mapping()?;
    let id = top.get_scalar("id")?.as_str().to_string();
    // An absent section declares nothing; one that is not a mapping is unread.
    let section = |key: &str| match top.get(key) {
        None => Some(None),
        Some(Node::Mapping(m)) => Some(Some(m)),
        Some(_) => None,
    };
    let variables = section("variables").map(|m| {
        m.into_iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| {
                let v = v.as_mapping();
                let scalar = |key: &str| {
                    v.and_then(|m| m.get_scalar(key))
                        .map(|s| s.as_str().trim().to_string())
                };
                let values: Option<Vec<String>> =
                    v.and_then(|m| m.get_sequence("values")).map(|s| {
                        s.iter()
                            .filter_map(|n| n.as_scalar().map(|x| x.as_str().to_string()))
                            .collect()
                    });
                let ty = scalar("type").and_then(|t| quiet_type(&t, values.as_deref()));
                let has_default = v.is_some_and(|m| m.get("default").is_some());
                let required = scalar("required").as_deref() == Some("true") && !has_default;
                (k.as_str().to_string(), InterfaceVariable { ty, required })
            })
            .collect()
    });
    let profiles = section("profiles").map(|m| {
        m.into_iter()
            .flat_map(|m| m.iter())
            .map(|(k, _)| k.as_str().to_string())
            .collect()
    });
    let results = match top.get("steps") {
        Some(Node::Mapping(steps)) => Some(
            steps
                .iter()
                .filter_map(|(_, s)| {
                    let s = s.as_mapping()?;
                    (s.get_scalar("kind")?.as_str() == "end")
                        .then(|| s.get_scalar("result").map(|r| r.as_str().to_string()))?
                })
                .collect(),
        ),
        _ => None,
    };
    let messages = match top.get("steps") {
        Some(Node::Mapping(steps)) => steps
            .iter()
            .filter_map(|(_, s)| {
                let s = s.as_mapping()?;
                (s.get_scalar("kind")?.as_str() == "wait_message")
                    .then(|| s.get_scalar("message").map(|r| r.as_str().to_string()))?
            })
            .collect(),
        _ => Vec::new(),
    };
    let notice_steps = match top.get("steps") {
        Some(Node::Mapping(steps)) => steps
            .iter()
            .filter(|(_, s)| {
                s.as_mapping()
                    .and_then(|m| m.get_scalar("kind"))
                    .is_some_and(|k| k.as_str() == "notice")
            })
            .map(|(k, _)| k.as_str().to_string())
            .collect(),
        _ => Vec::new(),
    };
    let facts = match top.get("steps") {
        Some(Node::Mapping(steps)) => steps.iter().flat_map(|(_, s)| recorded_facts(s)).collect(),
        _ => Vec::new(),
    };
    Some((
        id,
        ProcessInterface {
            variables,
            profiles,
            results,
            messages,
            facts,
            notice_steps,
        },
    ))
}

/// The `fact:` names of the `record:` entries of a step's outcomes and
/// decision branches, read leniently.
fn recorded_facts(step: &Node) -> Vec<String> {
    let records = |holder: &Node| -> Vec<String> {
        holder
            .as_mapping()
            .and_then(|m| m.get_sequence("record"))
            .map(|seq| {
                seq.iter()
                    .filter_map(|r| r.as_mapping()?.get_scalar("fact"))
                    .map(|f| f.as_str().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let Some(s) = step.as_mapping() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(outcomes) = s.get_mapping("outcomes") {
        for (_, o) in outcomes.iter() {
            out.extend(records(o));
        }
    }
    if let Some(branches) = s.get_sequence("branches") {
        for b in branches.iter() {
            out.extend(records(b));
        }
    }
    out
}

impl Checker<'_> {
    /// Checks a call's `result:` variable, whose type `ty` is declared: it
    /// receives an end result id as a text, so it must be a string, text or
    /// enum (E032).
    pub(super) fn call_result_type(&mut self, p: &Path, r: &RawCall, var: &str, ty: &ValueType) {
        if matches!(ty, ValueType::String | ValueType::Text | ValueType::Enum(_)) {
            return;
        }
        let results = self
            .ctx
            .interfaces
            .get(&r.process)
            .and_then(|i| i.results.clone())
            .filter(|r| !r.is_empty());
        let (example, hint) = match &results {
            Some(rs) => (
                format!("`{}`", rs[0]),
                format!(
                    "declare `{var}` with `type: text`, or `type: enum` with `values: [{}]`",
                    rs.join(", ")
                ),
            ),
            None => (
                "the `result:` of one of its `end` steps".to_string(),
                format!("declare `{var}` with `type: text`, or an enum of the results"),
            ),
        };
        self.err(
            &p.key("result"),
            Code::CallResultType,
            format!(
                "variable `{var}` is {}, but it receives the end result of process `{}`, a text such as {example}",
                a_type(ty),
                r.process
            ),
            Some(hint),
        );
    }

    /// Checks a call against the interface of the process it calls: every
    /// input is a variable of the child (E031) of a fitting type (E034),
    /// every variable the child requires is given (E030), the profile is
    /// one of the child's (E021), and an enum `result:` variable can hold
    /// every end result of the child (E032). Only the inputs' own types
    /// (E035) are checked when the callee is not in the library.
    pub(super) fn call_contract(&mut self, p: &Path, r: &RawCall, inputs: &[(String, Expr)]) {
        let iface = self.ctx.interfaces.get(&r.process).cloned();
        let vars = iface.as_ref().and_then(|i| i.variables.clone());
        // Not for a stored definition ([`Checker::judges_cel`]).
        let judge = self.judges_cel();
        // Inputs whose receiving type is unknown are still checked for
        // type errors of their own.
        for (name, e) in inputs.iter().filter(|_| judge) {
            if vars
                .as_ref()
                .and_then(|v| v.get(name)?.ty.as_ref())
                .is_none()
            {
                self.check_cel_types(&p.key("inputs").key(name), e);
            }
        }
        let Some(iface) = iface else {
            return;
        };
        let process = &r.process;
        if let Some(vars) = &vars {
            for (k, _) in &r.inputs {
                if !vars.contains_key(k) {
                    let hint = suggest(k, "variable", vars.keys().map(String::as_str));
                    self.err_key(
                        &p.key("inputs").key(k),
                        Code::CallUnknownInput,
                        format!("process `{process}` has no variable `{k}` to receive this input"),
                        Some(hint),
                    );
                }
            }
            for (name, e) in inputs.iter().filter(|_| judge) {
                if let Some(Some(ty)) = vars.get(name).map(|v| v.ty.clone()) {
                    let target = format!("variable `{name}` of process `{process}`");
                    self.check_stored_value(&p.key("inputs").key(name), e, &ty, name, &target);
                }
            }
            for (name, v) in vars {
                if v.required && !r.inputs.contains_key(name) {
                    let what = v.ty.as_ref().map_or_else(|| "a value".to_string(), a_type);
                    self.err(
                        &p.key("inputs"),
                        Code::CallMissingInput,
                        format!(
                            "the call leaves out `{name}`, which process `{process}` requires (`required: true`, no default)"
                        ),
                        Some(format!(
                            "add `{name}: EXPR` to `inputs`, EXPR being a CEL expression over this process's variables that gives {what}"
                        )),
                    );
                }
            }
        }
        if let (Some(profile), Some(profiles)) = (&r.profile, &iface.profiles) {
            if !profiles.contains(profile) {
                let hint = suggest(profile, "profile", profiles.iter().map(String::as_str));
                self.err(
                    &p.key("profile"),
                    Code::UnknownProfile,
                    format!("process `{process}` has no profile `{profile}`"),
                    Some(hint),
                );
            }
        }
        if let (Some(var), Some(results)) = (&r.result, &iface.results) {
            if let Some(Some(ValueType::Enum(values))) = self.variables.get(var).cloned() {
                let missing: Vec<&str> = results
                    .iter()
                    .filter(|x| !values.contains(x))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    let list = missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let them = if missing.len() == 1 { "it" } else { "them" };
                    self.err(
                        &p.key("result"),
                        Code::CallResultType,
                        format!(
                            "enum variable `{var}` cannot hold {list}, {} of process `{process}`",
                            if missing.len() == 1 { "an end result" } else { "end results" }
                        ),
                        Some(format!(
                            "add {them} to the `values:` of `{var}`, or declare `{var}` with `type: text`"
                        )),
                    );
                }
            }
        }
    }
}
