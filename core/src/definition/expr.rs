//! CEL conditions and computed values in definitions.
//!
//! Expressions are compiled once, at load, and kept in the checked model; the
//! runtime evaluates the compiled program. At load we also find the free
//! variables of each expression (the names it reads that no comprehension
//! binds), so that `reconsidertion_filed` is caught as a typo before deploy,
//! not as a runtime error during an escalation.

use std::collections::BTreeSet;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr as Ast};
use cel::IdedExpr;

use super::model::Expr;

/// Names every expression may read besides the declared variables:
/// `profile` (the instance's profile values) and `now` (the instant of the
/// event being applied, passed in by the caller: the core reads no clock).
pub const BUILTIN_NAMES: &[&str] = &["profile", "now"];

/// Why an expression was refused.
#[derive(Debug)]
pub struct ExprError {
    /// 1-based column inside the expression text, when known.
    pub column: Option<usize>,
    /// The parser's message.
    pub message: String,
}

/// Compiles `source`; returns the expression and its free variables.
pub fn compile(source: &str) -> Result<(Expr, BTreeSet<String>), ExprError> {
    let program = cel::Program::compile(source).map_err(|e| {
        let first = e.errors.first();
        ExprError {
            column: first
                .and_then(|e| usize::try_from(e.pos.1).ok())
                .map(|c| c.max(1)),
            message: first.map_or_else(|| e.to_string(), |e| e.msg.clone()),
        }
    })?;
    let mut bound = BTreeSet::new();
    collect_bound(program.expression(), &mut bound);
    let free = program
        .references()
        .variables()
        .into_iter()
        .filter(|v| !bound.contains(*v))
        .map(str::to_string)
        .collect();
    Ok((
        Expr {
            source: source.to_string(),
            program: Arc::new(program),
        },
        free,
    ))
}

/// The names bound by comprehensions (`list.filter(c, …)` binds `c`).
fn collect_bound(e: &IdedExpr, out: &mut BTreeSet<String>) {
    match &e.expr {
        Ast::Comprehension(c) => {
            out.insert(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                out.insert(v.clone());
            }
            out.insert(c.accu_var.clone());
            for sub in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                collect_bound(sub, out);
            }
        }
        Ast::Call(call) => {
            if let Some(t) = &call.target {
                collect_bound(t, out);
            }
            call.args.iter().for_each(|a| collect_bound(a, out));
        }
        Ast::List(l) => l.elements.iter().for_each(|a| collect_bound(a, out)),
        Ast::Select(s) => collect_bound(&s.operand, out),
        Ast::Map(m) => m.entries.iter().for_each(|en| match &en.expr {
            EntryExpr::MapEntry(me) => {
                collect_bound(&me.key, out);
                collect_bound(&me.value, out);
            }
            EntryExpr::StructField(f) => collect_bound(&f.value, out),
        }),
        Ast::Struct(s) => s.entries.iter().for_each(|en| match &en.expr {
            EntryExpr::MapEntry(me) => {
                collect_bound(&me.key, out);
                collect_bound(&me.value, out);
            }
            EntryExpr::StructField(f) => collect_bound(&f.value, out),
        }),
        Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(s: &str) -> Vec<String> {
        compile(s).unwrap().1.into_iter().collect()
    }

    #[test]
    fn comprehension_variables_are_not_free() {
        assert_eq!(
            free("size(cands.filter(c, c.source == 'x')) * 2 >= size(cands)"),
            ["cands"]
        );
        assert_eq!(
            free("a.exists(x, x > b) && profile.y"),
            ["a", "b", "profile"]
        );
    }

    #[test]
    fn syntax_errors_have_a_column() {
        let e = compile("a +").unwrap_err();
        assert_eq!(e.column, Some(4));
        assert!(e.message.contains("Syntax error"));
    }
}
