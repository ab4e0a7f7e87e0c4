//! CEL conditions and computed values in definitions.
//!
//! Expressions are compiled once, at load, and kept in the checked model; the
//! runtime evaluates the compiled program. At load we also find the free
//! variables of each expression (the names it reads that no comprehension
//! binds), so that `reconsidertion_filed` is caught as a typo before deploy,
//! not as a runtime error during an escalation.
//!
//! What an expression may cost to evaluate is bounded in [`super::cost`]
//! (E037). Only the parser's own bound is here: a text longer than
//! [`MAX_PARSED_BYTES`] is not handed to the parser at all, which takes
//! seconds on a few hundred KB and overflows the stack on a long enough
//! chain of operators.

use std::collections::BTreeSet;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr as Ast};
use cel::IdedExpr;

use super::model::Expr;

/// Names every expression may read besides the declared variables:
/// `profile` (the instance's profile values) and `now` (the instant of the
/// event being applied, passed in by the caller: the core reads no clock).
pub const BUILTIN_NAMES: &[&str] = &["profile", "now"];

/// The longest text given to the parser: twice what the cost check allows
/// ([`super::cost::MAX_SOURCE_BYTES`]), so that a definition deployed
/// before that check loads still, and short of what the parser is slow or
/// unsafe on (a chain `a+a+…` of 8 KiB parses on a 2 MiB thread stack in
/// a release build; one of 20 KiB overflows it).
pub const MAX_PARSED_BYTES: usize = 2 * super::cost::MAX_SOURCE_BYTES;

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
    if source.len() > MAX_PARSED_BYTES {
        return Err(ExprError {
            column: None,
            message: format!(
                "it is {} bytes long, and an expression may be at most {} bytes",
                source.len(),
                super::cost::MAX_SOURCE_BYTES
            ),
        });
    }
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
    let mut all = Vec::new();
    walk(e, &mut all);
    for x in all {
        if let Ast::Comprehension(c) = &x.expr {
            out.insert(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                out.insert(v.clone());
            }
            out.insert(c.accu_var.clone());
        }
    }
}

/// Every sub-expression of `e`, `e` first.
fn walk<'e>(e: &'e IdedExpr, out: &mut Vec<&'e IdedExpr>) {
    out.push(e);
    match &e.expr {
        Ast::Comprehension(c) => {
            for sub in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                walk(sub, out);
            }
        }
        Ast::Call(call) => {
            if let Some(t) = &call.target {
                walk(t, out);
            }
            call.args.iter().for_each(|a| walk(a, out));
        }
        Ast::List(l) => l.elements.iter().for_each(|a| walk(a, out)),
        Ast::Select(s) => walk(&s.operand, out),
        Ast::Map(m) => m.entries.iter().for_each(|en| match &en.expr {
            EntryExpr::MapEntry(me) => {
                walk(&me.key, out);
                walk(&me.value, out);
            }
            EntryExpr::StructField(f) => walk(&f.value, out),
        }),
        Ast::Struct(s) => s.entries.iter().for_each(|en| match &en.expr {
            EntryExpr::MapEntry(me) => {
                walk(&me.key, out);
                walk(&me.value, out);
            }
            EntryExpr::StructField(f) => walk(&f.value, out),
        }),
        Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => {}
    }
}

/// The fact names `e` reads: for each call of a fact function
/// (`runtime::facts`: `facts`, `last_fact`, `streak`), its function and the
/// name it gives as a literal text, or `None` when the name is not a
/// literal (the validator then cannot tell which fact is meant).
pub fn fact_reads(e: &Expr) -> Vec<(String, Option<String>)> {
    use cel::common::ast::LiteralValue;
    let mut all = Vec::new();
    walk(e.program.expression(), &mut all);
    all.into_iter()
        .filter_map(|x| match &x.expr {
            Ast::Call(c)
                if c.target.is_none()
                    && crate::runtime::facts::FUNCTIONS.contains(&c.func_name.as_str()) =>
            {
                let name = match c.args.get(1).map(|a| &a.expr) {
                    Some(Ast::Literal(LiteralValue::String(s))) => Some(s.inner().to_string()),
                    _ => None,
                };
                Some((c.func_name.clone(), name))
            }
            _ => None,
        })
        .collect()
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

    /// Issue 12, finding 9: a text of hundreds of KB is refused before the
    /// parser, which took seconds on it (or overflowed the stack).
    #[test]
    fn issue12_a_very_long_text_is_not_parsed() {
        let long = vec!["a"; 100_000].join(" + ");
        let start = std::time::Instant::now();
        let e = compile(&long).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_millis(100));
        assert_eq!(e.column, None);
        assert_eq!(
            e.message,
            "it is 399997 bytes long, and an expression may be at most 4096 bytes"
        );
        // Up to the bound, a text is parsed (and the cost check judges it).
        let numbers: Vec<String> = (0..1500).map(|i| i.to_string()).collect();
        let fine = format!("a in [{}]", numbers.join(", "));
        assert!(fine.len() > super::super::cost::MAX_SOURCE_BYTES);
        assert!(fine.len() <= MAX_PARSED_BYTES);
        assert!(compile(&fine).is_ok());
    }

    #[test]
    fn syntax_errors_have_a_column() {
        let e = compile("a +").unwrap_err();
        assert_eq!(e.column, Some(4));
        assert!(e.message.contains("Syntax error"));
    }
}
