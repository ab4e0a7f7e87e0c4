//! The worst-case cost of a CEL expression, bounded at load (E037).
//!
//! The cel crate evaluates without any limit of time or memory, and a
//! thread cannot be stopped from outside: a few KB of text such as
//! `[1, …, 1000].all(a, [1, …, 1000].all(b, [1, …, 1000].all(c, true)))`
//! loop 10^9 times, and three nested `map`s build a list of 10^9 items
//! (issue 12, finding 9: `duban start` hung, or aborted at 3.85 GB). So
//! every expression is bounded once, at load, before anything evaluates it
//! — the validator's own sample evaluation included:
//!
//! - its text is at most [`MAX_SOURCE_BYTES`] long;
//! - its syntax tree nests at most [`MAX_DEPTH`] levels (the evaluator
//!   recurses once per level, and must not overflow its stack);
//! - [`check`] estimates an upper bound of its cost, which must be at most
//!   [`MAX_COST`].
//!
//! A unit of cost is one step of the evaluator: a node evaluated, an item
//! of a list or map visited, built, copied or compared, or
//! [`TEXT_BYTES_PER_UNIT`] bytes of text copied or compared. At the limit
//! an evaluation takes well under a second (an estimate of 720,000 ran in
//! 40 ms in a release build), and can allocate at most a million items or
//! about 1 GiB of text — the latter only by copying long texts at every
//! step.
//!
//! The estimate walks the tree once and gives each node a cost and a
//! [`Shape`]: bounds on the size of the value it gives. A literal has its
//! own size; a variable is taken at the most the runtime lets it hold
//! (`runtime::values`: a list at most [`MAX_LIST_ITEMS`] items, or its
//! `max_items`, a value at most [`MAX_VALUE_BYTES`] of text), and these
//! bounds are enforced on every value given to an instance, which is what
//! makes the bound proven at load hold at run time. A comprehension (`all`,
//! `exists`, `exists_one`, `map`, `filter`) costs the items of its range
//! times the cost of one round; `+` costs the size of what it builds;
//! comparisons the smaller side; `in` the items it may compare. Records of
//! the directory (people and agencies) are assumed to have fields of at
//! most [`DIRECTORY_FIELD_BYTES`] and at most [`DIRECTORY_ROLES`] roles: the
//! directory is the administrators' own file, not a value from outside.
//!
//! Only the cel crate's standard library is reachable (`Program::compile`
//! builds no extension), with the date functions the runtime adds to every
//! context (`runtime::cel_dates`: `years_between`, `age_on`, `date`) and the
//! fact functions (`runtime::facts`: `facts`, `last_fact`, `streak`), so no
//! function builds a value larger than its arguments; a function the
//! estimate does not know is charged as reading all of its arguments and
//! giving one of them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use cel::common::ast::{operators as op, ComprehensionExpr, EntryExpr, Expr as Ast, LiteralValue};
use cel::IdedExpr;

use super::model::{Definition, ValueType};
use crate::runtime::facts::{MAX_FACTS_READ, MAX_FACT_VALUE_BYTES};
use crate::runtime::values::{MAX_LIST_ITEMS, MAX_VALUE_BYTES};

/// The most cost an expression may have. Real conditions are far below it:
/// a test of each of 1,000 candidates costs some 100,000; two nested
/// comprehensions over lists of 1,000 items are over it.
pub const MAX_COST: u64 = 1_000_000;

/// The deepest an expression's syntax tree may nest. Every operator, call
/// and macro is a level (a macro two: its loop and its step); a chain of
/// `&&` or `||` is balanced by the parser, one of `+` is not. The
/// evaluator recurses once per level, on thread stacks of 2 MiB (a tokio
/// worker's, a test's): some 36 KiB a level in a debug build.
pub const MAX_DEPTH: usize = 48;

/// The charge for one `matches` call: a quarter of [`MAX_COST`], because
/// the pattern is compiled anew on every call.
pub const MATCHES_COST: u64 = MAX_COST / 4;

/// The charge for one call of a date function (`years_between`, `age_on`,
/// `date`): a few dates parsed and compared.
pub const DATE_FUNCTION_COST: u64 = 4;

/// The longest an expression's text may be: a condition is a line or two,
/// and a literal list of a few hundred values fits.
pub const MAX_SOURCE_BYTES: usize = 4096;

/// The bytes of text that cost one unit to copy or compare.
pub const TEXT_BYTES_PER_UNIT: u64 = 1024;

/// The longest field of a directory record the estimate assumes.
pub const DIRECTORY_FIELD_BYTES: u64 = 1024;

/// The most roles of a person of the directory the estimate assumes.
pub const DIRECTORY_ROLES: u64 = 16;

/// Costs past this are shown as "more than" it: the exact figure of a
/// runaway expression says nothing more.
const SHOWN_COST: u64 = 1_000_000_000_000_000;

/// Bounds on the size of a value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// The most items at the top level (a list's elements, a map's
    /// entries): the rounds of a comprehension over it. 0 for a scalar.
    pub items: u64,
    /// The most items at every level together.
    pub total: u64,
    /// The most bytes of text in the whole value (strings and map keys).
    pub bytes: u64,
    /// What each item may be (a map's keys and values alike); `None` when
    /// it has no items.
    pub item: Option<Arc<Shape>>,
    /// Each field by name, when the value is a record of known fields (a
    /// person, an agency, `profile`): `applicant.level` is then a short
    /// text, not whatever field of the record is largest.
    pub fields: Option<Arc<BTreeMap<String, Shape>>>,
}

impl Shape {
    /// An int, a bool, a timestamp, null.
    pub fn scalar() -> Shape {
        Shape::default()
    }

    /// A text of at most `bytes`.
    pub fn text(bytes: u64) -> Shape {
        Shape {
            bytes,
            ..Shape::default()
        }
    }

    /// A list of at most `n` items, each at most `item`.
    pub fn list(n: u64, item: Shape) -> Shape {
        Shape {
            items: n,
            total: n.saturating_mul(item.total.saturating_add(1)),
            bytes: n.saturating_mul(item.bytes),
            item: Some(Arc::new(item)),
            fields: None,
        }
    }

    /// A record (a CEL map with short keys) of these fields.
    fn record<'n>(fields: impl IntoIterator<Item = (&'n str, Shape)>) -> Shape {
        const KEY_BYTES: u64 = 32;
        let mut s = Shape {
            item: Some(Arc::new(Shape::text(KEY_BYTES))),
            ..Shape::default()
        };
        let mut by_name = BTreeMap::new();
        for (name, f) in fields {
            s.items = s.items.saturating_add(1);
            s.total = s.total.saturating_add(1).saturating_add(f.total);
            s.bytes = s.bytes.saturating_add(KEY_BYTES).saturating_add(f.bytes);
            s.item = Some(Arc::new(s.item().join(&f)));
            by_name.insert(name.to_string(), f);
        }
        s.fields = Some(Arc::new(by_name));
        s
    }

    /// A person of the directory, as CEL sees it (`runtime::directory`).
    fn person() -> Shape {
        let field = || Shape::text(DIRECTORY_FIELD_BYTES);
        let roles = Shape::list(DIRECTORY_ROLES, Shape::text(64));
        Shape::record(
            [
                "id",
                "name",
                "organisation",
                "level",
                "county",
                "email",
                "mobile",
            ]
            .into_iter()
            .map(|n| (n, field()))
            .chain([("roles", roles)]),
        )
    }

    /// An agency of the directory, as CEL sees it.
    fn agency() -> Shape {
        Shape::record(
            ["id", "name", "level", "county", "email", "mobile"]
                .into_iter()
                .map(|n| (n, Shape::text(DIRECTORY_FIELD_BYTES))),
        )
    }

    /// A fact as CEL sees it (`runtime::facts`).
    fn fact() -> Shape {
        Shape::record(
            [
                "name", "value", "date", "at", "process", "instance", "step", "actor",
            ]
            .into_iter()
            .map(|n| (n, Shape::text(MAX_FACT_VALUE_BYTES as u64))),
        )
    }

    /// The most a value of `ty` may hold at run time; a list at most
    /// `max_items` items when that is lower than [`MAX_LIST_ITEMS`].
    pub fn of_type(ty: &ValueType, max_items: Option<u32>) -> Shape {
        let value_bytes = MAX_VALUE_BYTES as u64;
        match ty {
            ValueType::Int | ValueType::Bool => Shape::scalar(),
            // `is_mobile`, `is_email_address`.
            ValueType::Phone => Shape::text(11),
            ValueType::Email => Shape::text(64 + 1 + 253),
            ValueType::Enum(values) => {
                Shape::text(values.iter().map(|v| v.len() as u64).max().unwrap_or(0))
            }
            ValueType::String
            | ValueType::Text
            | ValueType::Role
            | ValueType::Date
            | ValueType::DateTime
            | ValueType::Period => Shape::text(value_bytes),
            ValueType::Person => Shape::person(),
            ValueType::Agency => Shape::agency(),
            ValueType::List(inner) => {
                let most = MAX_LIST_ITEMS as u64;
                let n = max_items.map_or(most, |m| u64::from(m).min(most));
                let mut s = Shape::list(n, Shape::of_type(inner, None));
                // The value's text is bounded in all; people and agencies
                // are ids in the value, records from the directory in CEL.
                if !matches!(**inner, ValueType::Person | ValueType::Agency) {
                    s.bytes = s.bytes.min(value_bytes);
                }
                s
            }
        }
    }

    /// What a name the estimate knows nothing of may hold: the largest
    /// value the runtime gives CEL, a list of people, or a text.
    fn any() -> Shape {
        Shape::list(MAX_LIST_ITEMS as u64, Shape::person())
            .join(&Shape::text(MAX_VALUE_BYTES as u64))
    }

    /// What each item may be; a scalar when there are none.
    fn item(&self) -> Shape {
        self.item.as_deref().cloned().unwrap_or_default()
    }

    /// Bounds holding for a value of either shape.
    fn join(&self, other: &Shape) -> Shape {
        Shape {
            items: self.items.max(other.items),
            total: self.total.max(other.total),
            bytes: self.bytes.max(other.bytes),
            item: join_items(&self.item, &other.item),
            // A field of either record; when one side is no record of
            // known fields, its items bound every field.
            fields: match (&self.fields, &other.fields) {
                (Some(a), Some(b)) => {
                    let mut all = (**a).clone();
                    for (k, v) in b.iter() {
                        let joined = all.get(k).map_or_else(|| v.clone(), |x| x.join(v));
                        all.insert(k.clone(), joined);
                    }
                    Some(Arc::new(all))
                }
                _ => None,
            },
        }
    }

    /// The shape of `self + other`: texts or lists put end to end.
    fn concat(&self, other: &Shape) -> Shape {
        Shape {
            items: self.items.saturating_add(other.items),
            total: self.total.saturating_add(other.total),
            bytes: self.bytes.saturating_add(other.bytes),
            item: join_items(&self.item, &other.item),
            fields: None,
        }
    }

    /// A comprehension's accumulator after `rounds` rounds, when it starts
    /// as `self` and is `after` after one: each round adds at most what
    /// the first added (the macros' steps append one value, or count).
    fn grown(&self, after: &Shape, rounds: u64) -> Shape {
        let grow = |from: u64, to: u64| {
            from.saturating_add(rounds.saturating_mul(to.saturating_sub(from)))
        };
        Shape {
            items: grow(self.items, after.items),
            total: grow(self.total, after.total),
            bytes: grow(self.bytes, after.bytes),
            item: join_items(&self.item, &after.item),
            fields: None,
        }
    }

    /// The cost of copying, comparing or converting the whole value.
    pub fn weight(&self) -> u64 {
        1u64.saturating_add(self.total)
            .saturating_add(self.bytes.div_ceil(TEXT_BYTES_PER_UNIT))
    }
}

fn join_items(a: &Option<Arc<Shape>>, b: &Option<Arc<Shape>>) -> Option<Arc<Shape>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(Arc::new(x.join(y))),
        (x, y) => x.clone().or_else(|| y.clone()),
    }
}

/// What the names an expression reads may hold at run time: the declared
/// variables, `profile` and `now`.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    names: BTreeMap<String, Shape>,
}

impl Inputs {
    /// The inputs of a definition: its `variables` (name, type when it is
    /// known, `max_items`) and its `parameters` (name, type), as
    /// `profile.NAME`. A name whose type is unknown may hold anything.
    pub fn new<'a>(
        variables: impl IntoIterator<Item = (&'a str, Option<&'a ValueType>, Option<u32>)>,
        parameters: impl IntoIterator<Item = (&'a str, Option<&'a ValueType>)>,
    ) -> Inputs {
        let of = |ty: Option<&ValueType>, max_items| {
            ty.map_or_else(Shape::any, |t| Shape::of_type(t, max_items))
        };
        let mut names: BTreeMap<String, Shape> = variables
            .into_iter()
            .map(|(name, ty, max_items)| (name.to_string(), of(ty, max_items)))
            .collect();
        let profile = Shape::record(
            parameters
                .into_iter()
                .map(|(name, ty)| (name, of(ty, None))),
        );
        names.insert("profile".into(), profile);
        names.insert("now".into(), Shape::scalar());
        Inputs { names }
    }

    /// The inputs of a checked definition.
    pub fn of(def: &Definition) -> Inputs {
        Inputs::new(
            def.variables
                .iter()
                .map(|(k, v)| (k.as_str(), Some(&v.ty), v.max_items)),
            def.parameters
                .iter()
                .map(|(k, p)| (k.as_str(), Some(&p.ty))),
        )
    }
}

/// Why an expression is refused: what is over which limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TooCostly {
    /// Its text is this many bytes long, over [`MAX_SOURCE_BYTES`].
    Long(usize),
    /// It nests this many levels deep, over [`MAX_DEPTH`].
    Deep(usize),
    /// Its worst-case cost is this, over [`MAX_COST`].
    Costly(u64),
}

impl fmt::Display for TooCostly {
    /// The end of a sentence that starts with the expression.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TooCostly::Long(n) => write!(
                f,
                "is {} bytes long, more than the {} an expression may have",
                grouped(n as u64),
                grouped(MAX_SOURCE_BYTES as u64)
            ),
            TooCostly::Deep(d) => write!(
                f,
                "nests {d} levels deep, more than the {MAX_DEPTH} an expression may have"
            ),
            TooCostly::Costly(c) if c > SHOWN_COST => write!(
                f,
                "may take more than {} steps to evaluate, over the limit of {}",
                grouped(SHOWN_COST),
                grouped(MAX_COST)
            ),
            TooCostly::Costly(c) => write!(
                f,
                "may take up to {} steps to evaluate, over the limit of {}",
                grouped(c),
                grouped(MAX_COST)
            ),
        }
    }
}

impl TooCostly {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            TooCostly::Costly(_) => format!(
                "the estimate counts every list variable at its most ({MAX_LIST_ITEMS} items, or its `max_items`) and every text at {} KiB; `all`, `exists`, `exists_one`, `map` and `filter` repeat their body once per item: do not nest them over long lists, or declare a lower `max_items` on the lists they go over",
                MAX_VALUE_BYTES / 1024
            ),
            TooCostly::Deep(_) | TooCostly::Long(_) => "write it shorter: compute parts of it into variables with an earlier `set:`, or keep a long list of values in a variable or a profile parameter".into(),
        }
    }
}

/// `1000000` as `1,000,000`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The start of a long expression's text, for a message.
pub fn excerpt(source: &str) -> String {
    const SHOWN: usize = 60;
    if source.chars().count() <= SHOWN {
        source.to_string()
    } else {
        let head: String = source.chars().take(SHOWN - 1).collect();
        format!("{}…", head.trim_end())
    }
}

/// Checks the expression `e`, compiled from `source`, against the limits;
/// gives its worst-case cost when it is within them.
pub fn check(source: &str, e: &IdedExpr, inputs: &Inputs) -> Result<u64, TooCostly> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(TooCostly::Long(source.len()));
    }
    // Measured without recursion, so that a tree too deep for the
    // estimate's own recursion is refused before it.
    let d = depth(e);
    if d > MAX_DEPTH {
        return Err(TooCostly::Deep(d));
    }
    let (cost, _) = Walk {
        inputs,
        scope: Vec::new(),
    }
    .node(e);
    if cost > MAX_COST {
        Err(TooCostly::Costly(cost))
    } else {
        Ok(cost)
    }
}

/// The levels of the tree under `e`, `e` included.
pub fn depth(e: &IdedExpr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(e, 1)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        stack.extend(children(e).into_iter().map(|c| (c, d + 1)));
    }
    deepest
}

fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Ast::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .collect(),
        Ast::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Ast::List(l) => l.elements.iter().collect(),
        Ast::Select(s) => vec![&s.operand],
        Ast::Map(m) => m.entries.iter().flat_map(|en| entry(&en.expr)).collect(),
        Ast::Struct(s) => s.entries.iter().flat_map(|en| entry(&en.expr)).collect(),
        Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => Vec::new(),
    }
}

/// The key (when there is one) and the value of a map or struct entry.
fn entry(e: &EntryExpr) -> Vec<&IdedExpr> {
    match e {
        EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
        EntryExpr::StructField(f) => vec![&f.value],
    }
}

/// The estimate's walk: the comprehension variables in scope.
struct Walk<'a> {
    inputs: &'a Inputs,
    /// Innermost last.
    scope: Vec<(&'a str, Shape)>,
}

impl<'a> Walk<'a> {
    fn name(&self, n: &str) -> Shape {
        self.scope
            .iter()
            .rev()
            .find(|(k, _)| *k == n)
            .map(|(_, s)| s.clone())
            .or_else(|| self.inputs.names.get(n).cloned())
            .unwrap_or_else(Shape::any)
    }

    /// The cost of evaluating `e` once, and the shape of its value.
    fn node(&mut self, e: &'a IdedExpr) -> (u64, Shape) {
        match &e.expr {
            Ast::Literal(LiteralValue::String(s)) => (1, Shape::text(s.inner().len() as u64)),
            Ast::Literal(LiteralValue::Bytes(b)) => (1, Shape::text(b.inner().len() as u64)),
            Ast::Literal(_) | Ast::Unspecified => (1, Shape::scalar()),
            Ast::Ident(n) => (1, self.name(n)),
            Ast::Select(s) => {
                let (cost, operand) = self.node(&s.operand);
                if s.test {
                    return (cost.saturating_add(1), Shape::scalar());
                }
                let field = match &operand.fields {
                    // A field the record lacks fails.
                    Some(fields) => fields.get(&s.field).cloned().unwrap_or_default(),
                    None => operand.item(),
                };
                (cost.saturating_add(field.weight()), field)
            }
            Ast::List(l) => self.collection(l.elements.iter().map(|x| (None, x))),
            Ast::Map(m) => self.collection(m.entries.iter().map(|en| match &en.expr {
                EntryExpr::MapEntry(me) => (Some(&me.key), &me.value),
                EntryExpr::StructField(f) => (None, &f.value),
            })),
            Ast::Struct(s) => self.collection(s.entries.iter().map(|en| match &en.expr {
                EntryExpr::MapEntry(me) => (Some(&me.key), &me.value),
                EntryExpr::StructField(f) => (None, &f.value),
            })),
            Ast::Call(call) => {
                let args: Vec<(u64, Shape)> = call
                    .target
                    .as_deref()
                    .into_iter()
                    .chain(&call.args)
                    .map(|a| self.node(a))
                    .collect();
                call_cost(&call.func_name, &args)
            }
            Ast::Comprehension(c) => {
                let (range_cost, range) = self.node(&c.iter_range);
                let rounds = range.items;
                let item = range.item();
                let (init_cost, init) = self.node(&c.accu_init);
                let outer = self.scope.len();
                self.scope.push((&c.iter_var, item.clone()));
                if let Some(v) = &c.iter_var2 {
                    self.scope.push((v, item.clone()));
                }
                self.scope.push((&c.accu_var, init.clone()));
                // One round: the step, walked once (walking it again for
                // a grown accumulator would double the walk per nesting).
                let (step_cost, after) = match append_step(c) {
                    // `map` and `filter` append in place (the cel crate's
                    // `AppendStep`): a round costs the appended items.
                    Some((guard, items)) => {
                        let guard_cost = guard.map_or(0, |g| self.node(g).0);
                        let (items_cost, appended) = self.node(items);
                        (
                            guard_cost
                                .saturating_add(items_cost)
                                .saturating_add(appended.weight()),
                            init.concat(&appended),
                        )
                    }
                    None => self.node(&c.loop_step),
                };
                let accu = init.grown(&after, rounds);
                // A step that is no append and grows its accumulator may
                // copy it every round.
                let step_cost = if accu == init || append_step(c).is_some() {
                    step_cost
                } else {
                    step_cost.saturating_add(accu.weight())
                };
                if let Some(last) = self.scope.last_mut() {
                    last.1 = accu;
                }
                let (cond_cost, _) = self.node(&c.loop_cond);
                let (result_cost, result) = self.node(&c.result);
                self.scope.truncate(outer);
                // Each round binds a copy of the item.
                let round = cond_cost
                    .saturating_add(step_cost)
                    .saturating_add(item.weight());
                let cost = 1u64
                    .saturating_add(range_cost)
                    .saturating_add(init_cost)
                    .saturating_add(rounds.saturating_mul(round))
                    .saturating_add(result_cost);
                (cost, result)
            }
        }
    }

    /// A list (entries without keys) or map literal: each element is
    /// evaluated and copied into it.
    fn collection(
        &mut self,
        entries: impl Iterator<Item = (Option<&'a IdedExpr>, &'a IdedExpr)>,
    ) -> (u64, Shape) {
        let mut cost = 1u64;
        let mut shape = Shape::scalar();
        for (key, value) in entries {
            shape.items = shape.items.saturating_add(1);
            shape.total = shape.total.saturating_add(1);
            for x in key.into_iter().chain([value]) {
                let (c, s) = self.node(x);
                cost = cost.saturating_add(c).saturating_add(s.weight());
                shape.total = shape.total.saturating_add(s.total);
                shape.bytes = shape.bytes.saturating_add(s.bytes);
                shape.item = Some(Arc::new(shape.item().join(&s)));
            }
        }
        (cost, shape)
    }
}

/// The loop step of a `map` or `filter`, `@result + [x]` or `guard ?
/// @result + [x] : @result` over an empty list: its guard and its appended
/// list. The cel crate appends these in place instead of copying the
/// accumulator every round; the conditions are its own (`AppendStep`).
fn append_step(c: &ComprehensionExpr) -> Option<(Option<&IdedExpr>, &IdedExpr)> {
    let is_accu = |e: &IdedExpr| matches!(&e.expr, Ast::Ident(n) if *n == c.accu_var);
    fn appended<'e>(e: &'e IdedExpr, accu: &str) -> Option<&'e IdedExpr> {
        match &e.expr {
            Ast::Call(call) if call.func_name == op::ADD && call.target.is_none() => {
                match call.args.as_slice() {
                    [lhs, rhs]
                        if matches!(&lhs.expr, Ast::Ident(n) if n == accu)
                            && matches!(rhs.expr, Ast::List(_)) =>
                    {
                        Some(rhs)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
    let empty_init = matches!(&c.accu_init.expr, Ast::List(l) if l.elements.is_empty());
    if !empty_init || !is_accu(&c.result) || !matches!(c.loop_cond.expr, Ast::Literal(_)) {
        return None;
    }
    match &c.loop_step.expr {
        Ast::Call(call) if call.func_name == op::CONDITIONAL && call.target.is_none() => {
            match call.args.as_slice() {
                [guard, step, otherwise] if is_accu(otherwise) => {
                    appended(step, &c.accu_var).map(|items| (Some(guard), items))
                }
                _ => None,
            }
        }
        _ => appended(&c.loop_step, &c.accu_var).map(|items| (None, items)),
    }
}

/// The cost and shape of a call of `name` on arguments (the target of a
/// method first) of these costs and shapes.
fn call_cost(name: &str, args: &[(u64, Shape)]) -> (u64, Shape) {
    let evaluated = args.iter().fold(0u64, |a, (c, _)| a.saturating_add(*c));
    let read = args
        .iter()
        .fold(0u64, |a, (_, s)| a.saturating_add(s.weight()));
    let shape = |i: usize| args.get(i).map(|(_, s)| s.clone()).unwrap_or_default();
    let weight = |i: usize| shape(i).weight();
    let plus = |extra: u64| evaluated.saturating_add(extra);
    match name {
        // Only one branch is evaluated.
        op::CONDITIONAL if args.len() == 3 => (
            args[0]
                .0
                .saturating_add(args[1].0.max(args[2].0))
                .saturating_add(1),
            shape(1).join(&shape(2)),
        ),
        op::LOGICAL_AND
        | op::LOGICAL_OR
        | op::LOGICAL_NOT
        | op::NOT_STRICTLY_FALSE
        | op::NEGATE
        | op::SUBSTRACT
        | op::MULTIPLY
        | op::DIVIDE
        | op::MODULO => (plus(1), Shape::scalar()),
        op::ADD => {
            let sum = shape(0).concat(&shape(1));
            (plus(sum.weight()), sum)
        }
        // Texts and lists compare up to the end of the shorter.
        op::EQUALS
        | op::NOT_EQUALS
        | op::LESS
        | op::LESS_EQUALS
        | op::GREATER
        | op::GREATER_EQUALS => (plus(weight(0).min(weight(1))), Shape::scalar()),
        // A list is searched item by item.
        op::IN => {
            let compare = weight(0).min(shape(1).item().weight());
            (
                plus(weight(0).saturating_add(shape(1).items.saturating_mul(compare))),
                Shape::scalar(),
            )
        }
        op::INDEX | op::OPT_INDEX | op::OPT_SELECT => {
            let item = shape(0).item();
            (plus(weight(1).saturating_add(item.weight())), item)
        }
        // A list's or map's size is stored; a text's is counted, in
        // characters.
        "size" => {
            let text = shape(0).bytes.div_ceil(TEXT_BYTES_PER_UNIT);
            (
                plus(if shape(0).items == 0 { 1 + text } else { 1 }),
                Shape::scalar(),
            )
        }
        n if n.starts_with("get") => (plus(1), Shape::scalar()),
        // The pattern is compiled on every call (the cel crate keeps no
        // cache), which alone can take most of a second for a short pattern
        // of counted repetitions (`\\w{200}`), then matched in time linear
        // in the text for each state of the pattern: a call is charged
        // `MATCHES_COST`, so a few `matches` may run once, never per item.
        "matches" => (
            plus(MATCHES_COST.saturating_add(weight(0).saturating_mul(weight(1)))),
            Shape::scalar(),
        ),
        // The date functions (`runtime::cel_dates`) read a date or an
        // instant from the start of each argument (a parser stops at the
        // first character out of place, so a long text costs no more) and
        // give an int or a 10-byte date.
        // The fact functions (`runtime::facts`) filter the facts loaded
        // about one subject, at most `MAX_FACTS_READ` of a name, and copy
        // them as records.
        "facts" => {
            let list = Shape::list(MAX_FACTS_READ as u64, Shape::fact());
            (plus(list.weight()), list)
        }
        "last_fact" => (plus(MAX_FACTS_READ as u64), Shape::fact()),
        "streak" => (plus(MAX_FACTS_READ as u64), Shape::scalar()),
        "years_between" | "age_on" => (plus(DATE_FUNCTION_COST), Shape::scalar()),
        "date" => (plus(DATE_FUNCTION_COST), Shape::text(10)),
        "contains" | "startsWith" | "endsWith" | "int" | "uint" | "double" | "bool"
        | "timestamp" | "duration" | "type" | "hasValue" => (plus(read), Shape::scalar()),
        "string" | "bytes" => {
            let bytes = args
                .iter()
                .fold(64u64, |a, (_, s)| a.saturating_add(s.bytes));
            (plus(read), Shape::text(bytes))
        }
        // Anything else gives at most one of its arguments or an item of
        // one (`max`, `min`, `dyn`, `optional.of`, `or`, `value`).
        _ => {
            let any = args
                .iter()
                .fold(Shape::scalar(), |a, (_, s)| a.join(s).join(&s.item()));
            (plus(read.saturating_add(1)), any)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cost of `source` with these variables (name, type, max_items).
    fn cost(source: &str, vars: &[(&str, &str, Option<u32>)]) -> Result<u64, TooCostly> {
        let types: Vec<(String, ValueType, Option<u32>)> = vars
            .iter()
            .map(|(n, t, m)| (n.to_string(), ty(t), *m))
            .collect();
        let inputs = Inputs::new(types.iter().map(|(n, t, m)| (n.as_str(), Some(t), *m)), []);
        let program = cel::Program::compile(source).unwrap();
        check(source, program.expression(), &inputs)
    }

    fn ty(t: &str) -> ValueType {
        match t {
            "int" => ValueType::Int,
            "bool" => ValueType::Bool,
            "string" => ValueType::String,
            "text" => ValueType::Text,
            "person" => ValueType::Person,
            "agency" => ValueType::Agency,
            other => match other
                .strip_prefix("list<")
                .and_then(|s| s.strip_suffix('>'))
            {
                Some(inner) => ValueType::List(Box::new(ty(inner))),
                None => panic!("no type {other} in these tests"),
            },
        }
    }

    fn numbers(n: usize) -> String {
        let items: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        format!("[{}]", items.join(","))
    }

    /// The finding's expressions, a few KB that loop 10^9 times or build
    /// 10^9 items (shortened to fit the source limit: the cost is what is
    /// refused).
    #[test]
    fn issue12_nested_comprehensions_are_too_costly() {
        let l = numbers(300);
        for source in [
            format!("{l}.all(a, {l}.all(b, {l}.all(c, true)))"),
            format!("{l}.exists(a, {l}.exists(b, {l}.exists(c, false)))"),
            format!("size({l}.map(a, {l}.map(b, {l}.map(c, c)))) > 0"),
            format!("size({l}.filter(a, {l}.filter(b, {l}.filter(c, true) == []) == [])) > 0"),
        ] {
            assert!(source.len() <= MAX_SOURCE_BYTES, "{}", source.len());
            match cost(&source, &[]) {
                Err(TooCostly::Costly(c)) => assert!(c > 27_000_000, "{c}"),
                other => panic!("{}: {other:?}", excerpt(&source)),
            }
        }
    }

    /// A list variable counts at its most: nested loops over it are over
    /// the limit, however short the text.
    /// Review of finding 9: a 39-byte condition compiled its pattern once
    /// per item and ran for minutes; `matches` now runs a few times per
    /// evaluation at most, never once per item of a list.
    #[test]
    fn matches_is_never_charged_per_item() {
        let vars = [("names", "list<string>", None), ("report", "text", None)];
        assert!(cost("report.matches('^[0-9]{6}$')", &vars).is_ok());
        assert!(cost("names.exists(n, n.matches('\\\\w{200}x'))", &vars).is_err());
        let few = [("names", "list<string>", Some(3))];
        assert!(cost("names.exists(n, n.matches('^[0-9]{6}$'))", &few).is_ok());
    }

    #[test]
    fn list_variables_count_at_their_most() {
        let vars = [("cands", "list<string>", None)];
        let c = cost("cands.all(a, cands.all(b, cands.all(c, a != c)))", &vars).unwrap_err();
        assert!(
            matches!(c, TooCostly::Costly(n) if n > 1_000_000_000),
            "{c:?}"
        );
        // Two levels over 1,000 items are over it too; with `max_items`
        // they fit.
        let pairs = "a.all(x, x in b)";
        let long = [("a", "list<string>", None), ("b", "list<string>", None)];
        assert!(matches!(cost(pairs, &long), Err(TooCostly::Costly(_))));
        let short = [
            ("a", "list<string>", Some(30)),
            ("b", "list<string>", Some(30)),
        ];
        assert!(cost(pairs, &short).unwrap() < 100_000);
    }

    /// Conditions as the processes write them, over lists of candidates,
    /// are far below the limit.
    #[test]
    fn real_conditions_are_well_within_the_limit() {
        let vars = [
            ("cands", "list<person>", None),
            ("names", "list<string>", None),
            ("applicant", "agency", None),
            ("respondent", "agency", None),
            ("rounds", "int", None),
            ("case_no", "string", None),
            ("report", "text", None),
        ];
        for source in [
            "applicant.level == '县级' && respondent.level == '县级' && applicant.county == respondent.county",
            "rounds + 1 >= 2",
            "'整改通知 ' + case_no",
            "size(cands.filter(c, c.county == applicant.county)) * 2 >= size(cands)",
            "cands.exists(c, c.level == '县级' && c.county == respondent.county)",
            "cands.all(c, 'reviewer' in c.roles)",
            "names.exists_one(n, n.startsWith('张'))",
            "names.map(n, n + '同志')",
            "report.contains('整改') || report.matches('^已.*')",
            "case_no in names",
        ] {
            let c = cost(source, &vars).unwrap_or_else(|e| panic!("{source}: {e}"));
            assert!(c < MAX_COST / 3, "{source}: {c}");
        }
    }

    /// The examples of docs/process-language.md.
    #[test]
    fn the_documented_examples_hold() {
        let long = [("candidates", "list<person>", None)];
        let short = [("candidates", "list<person>", Some(30))];
        let one = cost("candidates.exists(c, c.level == '县级')", &long).unwrap();
        assert!((40_000..60_000).contains(&one), "{one}");
        let pairs = "candidates.all(a, candidates.all(b, a == b || a.county != b.county))";
        assert!(matches!(cost(pairs, &long), Err(TooCostly::Costly(_))));
        assert!(cost(pairs, &short).is_ok());
        let triple = "candidates.all(a, candidates.all(b, candidates.all(c, a != c)))";
        assert!(matches!(cost(triple, &long), Err(TooCostly::Costly(_))));
    }

    /// The date functions cost a small constant each, however long the
    /// texts they are given, and `date` gives a short text.
    #[test]
    fn date_functions_are_cheap() {
        let vars = [("births", "list<string>", None), ("report", "text", None)];
        let one = cost("age_on(report, date(now)) >= 23", &vars).unwrap();
        assert!(one < 20, "{one}");
        let all = cost(
            "births.all(b, years_between(b, date(now)) >= 23 && date(b) + date(b) != '')",
            &vars,
        )
        .unwrap();
        // Mostly the copies of 1,000 items of 64 KiB each bound to `b`.
        assert!(all < MAX_COST / 5, "{all}");
    }

    /// Building text is charged by its size, not only by the loops: 1,000
    /// copies of a text of 64 KiB are 64 MB to allocate.
    #[test]
    fn built_text_is_counted() {
        let vars = [("names", "list<string>", None), ("report", "text", None)];
        let build = |n: usize| format!("size(names.map(x, {})) > 0", vec!["report"; n].join(" + "));
        assert!(cost(&build(2), &vars).is_ok());
        assert!(matches!(cost(&build(16), &vars), Err(TooCostly::Costly(_))));
    }

    #[test]
    fn deep_and_long_expressions_are_refused() {
        let deep = vec!["1"; MAX_DEPTH + 1].join(" + ");
        assert_eq!(cost(&deep, &[]), Err(TooCostly::Deep(MAX_DEPTH + 1)));
        let long = format!("{} == []", numbers(1500));
        assert!(matches!(cost(&long, &[]), Err(TooCostly::Long(n)) if n > MAX_SOURCE_BYTES));
    }

    #[test]
    fn messages_say_the_estimate_and_the_limit() {
        assert_eq!(
            TooCostly::Costly(3_006_003_001).to_string(),
            "may take up to 3,006,003,001 steps to evaluate, over the limit of 1,000,000"
        );
        assert_eq!(
            TooCostly::Costly(u64::MAX).to_string(),
            "may take more than 1,000,000,000,000,000 steps to evaluate, over the limit of 1,000,000"
        );
        assert_eq!(
            TooCostly::Long(5000).to_string(),
            "is 5,000 bytes long, more than the 4,096 an expression may have"
        );
        assert_eq!(excerpt("short"), "short");
        assert_eq!(excerpt(&"x".repeat(100)).chars().count(), 60);
    }

    /// Expressions at the depth limit evaluate on a test thread's stack
    /// (2 MiB) even in a debug build, whose evaluator takes some 36 KiB a
    /// level (a release build some 1.3 KiB): the limit keeps the
    /// evaluator's recursion safe. (Chains of operators: the parser itself
    /// recurses on brackets, and stops at 96 levels of them.)
    #[test]
    fn expressions_at_the_depth_limit_evaluate() {
        let n = MAX_DEPTH;
        for source in [
            vec!["1"; n].join(" + "),
            vec!["1"; n].join(" - "),
            vec!["'a'"; n].join(" + "),
        ] {
            let program = cel::Program::compile(&source).unwrap();
            assert_eq!(depth(program.expression()), n, "{}", excerpt(&source));
            assert!(cost(&source, &[]).is_ok(), "{}", excerpt(&source));
            assert!(
                program.execute(&cel::Context::default()).is_ok(),
                "{}",
                excerpt(&source)
            );
        }
    }
}
