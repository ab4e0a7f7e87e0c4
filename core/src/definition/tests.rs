//! Unit tests of the loader on small inline definitions.

use super::*;

fn load(text: &str) -> Result<Definition, Vec<Diagnostic>> {
    load_str("t.yaml", text, &LoadContext::default())
}

const MINIMAL: &str = "id: p\nversion: 1\nname: 测试\nstart: a\nsteps:\n  a:\n    kind: end\n    name: 结束\n    result: done\n";

#[test]
fn minimal_definition_loads() {
    let def = load(MINIMAL).unwrap();
    assert_eq!(def.start, "a");
}

/// A definition whose variables and parameters cover every type, with one
/// decision branch per condition in `conditions` and one `set` per entry of
/// `sets` on a task outcome.
fn typed(conditions: &[&str], sets: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "id: p\nversion: 1\nname: 测试\nroles: { office: 监督机构 }\n\
         parameters:\n  volunteer: { type: bool, default: false }\n  term: { type: period, default: 3年 }\n  quota: { type: int, default: 2 }\n\
         variables:\n  rounds: { type: int, default: 0 }\n  flag: { type: bool }\n  report: { type: text }\n  case_no: { type: string }\n  \
         kind: { type: enum, values: [督办函, 意见书] }\n  decided_on: { type: date }\n  started: { type: datetime }\n  \
         reply_period: { type: period }\n  contact: { type: email }\n  mobile: { type: phone }\n  applicant: { type: agency }\n  \
         respondent: { type: agency }\n  inspector: { type: person }\n  inspectors: { type: list<person> }\n  \
         missing_items: { type: list<enum>, values: [公函, 说明] }\n  tags: { type: list<string> }\n\
         start: review\nsteps:\n  review:\n    kind: task\n    name: 审查\n    assignee: { role: office }\n    outcomes:\n      ok:\n        label: 通过\n        next: check\n",
    );
    if !sets.is_empty() {
        text.push_str("        set:\n");
        for (k, v) in sets {
            text.push_str(&format!("          {k}: {}\n", serde_json::json!(v)));
        }
    }
    text.push_str("  check:\n    kind: decision\n    name: 判断\n    branches:\n");
    for c in conditions
        .iter()
        .chain(conditions.is_empty().then_some(&"flag"))
    {
        text.push_str(&format!(
            "      - when: {}\n        goto: done\n",
            serde_json::json!(c)
        ));
    }
    text.push_str("    default: done\n  done: { kind: end, name: 结束, result: ok }\n");
    text
}

fn codes(text: &str) -> Vec<(String, String)> {
    match load(text) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .into_iter()
            .map(|d| (d.code.to_string(), d.message))
            .collect(),
    }
}

#[test]
fn well_typed_expressions_are_accepted() {
    let conditions = [
        "rounds >= 2",
        "flag || rounds + 1 > profile.quota",
        "flag && size(report) > 0",
        "report != '' && case_no == 'K1'",
        "kind == '督办函' || kind in ['意见书']",
        "decided_on < '2025-06-01'",
        "timestamp(started) < now",
        "now - timestamp(started) > duration('24h')",
        "applicant.level == '县级' && applicant.county == respondent.county",
        "size(inspectors.filter(c, c.level == '市级')) * 2 >= size(inspectors)",
        "missing_items.exists(m, m == '公函')",
        "profile.volunteer",
        "'a' in tags",
        "reply_period == '30日'",
        "contact.endsWith('.cn') || mobile.startsWith('138')",
        // Not a type error: these fail on the samples for other reasons.
        "rounds / 0 > 1",
        "tags[3] == 'x'",
        "timestamp(decided_on) < now",
        "report == null || report == ''",
    ];
    let sets = [
        ("rounds", "rounds + 1"),
        ("flag", "rounds > 2 && !flag"),
        ("report", "'已整改 ' + case_no"),
        ("case_no", "applicant.county"),
        ("kind", "'意见书'"),
        ("decided_on", "'2025-09-01'"),
        ("started", "now"),
        ("reply_period", "'30日'"),
        ("contact", "applicant.email"),
        ("applicant", "respondent"),
        ("inspector", "inspectors[0]"),
        ("inspectors", "[inspector]"),
        ("missing_items", "['公函']"),
        ("tags", "[case_no, string(rounds)]"),
    ];
    let text = typed(&conditions, &sets);
    assert_eq!(codes(&text), Vec::<(String, String)>::new(), "{text}");
}

#[test]
fn conditions_must_be_bool() {
    for c in ["rounds + 1", "'yes'", "tags", "applicant", "now"] {
        let got = codes(&typed(&[c], &[]));
        assert_eq!(got.len(), 1, "{c}: {got:?}");
        assert_eq!(got[0].0, "E033", "{c}: {got:?}");
    }
}

#[test]
fn stored_values_must_fit_their_variable() {
    for (var, value) in [
        ("flag", "'yes'"),
        ("rounds", "'3'"),
        ("rounds", "1.5"),
        ("report", "rounds"),
        ("decided_on", "now"),
        ("inspector", "applicant"),
        ("applicant", "inspector"),
        ("tags", "[rounds]"),
        ("inspectors", "inspector"),
        // Constants are checked as the runtime will check them.
        ("kind", "'通知书'"),
        ("reply_period", "'三十天以后'"),
        ("contact", "'nobody'"),
    ] {
        let got = codes(&typed(&[], &[(var, value)]));
        assert_eq!(got.len(), 1, "{var} ← {value}: {got:?}");
        assert_eq!(got[0].0, "E034", "{var} ← {value}: {got:?}");
    }
}

#[test]
fn type_errors_inside_expressions_are_reported() {
    for c in [
        "rounds + case_no > 2",
        "size(rounds) > 1",
        "now < decided_on",
        "applicant + 1 == 2",
        "flag && rounds + 'x' > 0",
        "!flag || rounds + 'x' > 0",
    ] {
        let got = codes(&typed(&[c], &[]));
        assert_eq!(got.len(), 1, "{c}: {got:?}");
        assert_eq!(got[0].0, "E035", "{c}: {got:?}");
    }
}

/// A call checked against the interface of the process it calls.
fn call(step: &str) -> Vec<(String, String)> {
    let child = "id: child\nversion: 1\nname: 子流程\nprofiles: { XT: { name: 湘潭 } }\n\
                 variables:\n  agency: { type: agency, required: true }\n  topic: { type: text, required: true }\n  \
                 venue: { type: text, required: true, default: 会议室 }\n\
                 start: a\nsteps:\n  a: { kind: end, name: 结束, result: rectified }\n  b: { kind: end, name: 结束, result: refused }\n";
    let parent = format!(
        "id: p\nversion: 1\nname: 测试\nvariables:\n  agency: {{ type: agency }}\n  rounds: {{ type: int }}\n  \
         outcome: {{ type: enum, values: [rectified, refused] }}\n  note: {{ type: text }}\n\
         start: sub\nsteps:\n  sub:\n{step}    next: done\n  done: {{ kind: end, name: 结束, result: ok }}\n"
    );
    let (id, iface) = peek_interface(child).unwrap();
    let ctx = LoadContext {
        processes: Some([id.clone()].into()),
        interfaces: [(id, iface)].into(),
        ..Default::default()
    };
    match load_str("t.yaml", &parent, &ctx) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .into_iter()
            .map(|d| (d.code.to_string(), d.message))
            .collect(),
    }
}

#[test]
fn a_call_that_keeps_the_contract_loads() {
    let got = call("    kind: call\n    name: 约谈\n    process: child\n    profile: XT\n    inputs: { agency: agency, topic: \"'整改 ' + string(rounds)\" }\n    result: outcome\n");
    assert_eq!(got, Vec::<(String, String)>::new());
    let got = call("    kind: call\n    name: 约谈\n    process: child\n    inputs: { agency: agency, topic: note, venue: \"'办公室'\" }\n    result: note\n");
    assert_eq!(got, Vec::<(String, String)>::new());
}

#[test]
fn a_call_is_checked_against_the_called_process() {
    let code = |step: &str| -> Vec<String> { call(step).into_iter().map(|(c, _)| c).collect() };
    let head = "    kind: call\n    name: 约谈\n    process: child\n";
    assert_eq!(
        code(&format!("{head}    inputs: {{ agency: agency }}\n")),
        ["E030"]
    );
    assert_eq!(code(head), ["E030", "E030"]);
    assert_eq!(
        code(&format!(
            "{head}    inputs: {{ agency: agency, topic: note, place: note }}\n"
        )),
        ["E031"]
    );
    assert_eq!(
        code(&format!(
            "{head}    inputs: {{ agency: agency, topic: rounds }}\n"
        )),
        ["E034"]
    );
    assert_eq!(
        code(&format!(
            "{head}    profile: SQ\n    inputs: {{ agency: agency, topic: note }}\n"
        )),
        ["E021"]
    );
    assert_eq!(
        code(&format!(
            "{head}    inputs: {{ agency: agency, topic: note }}\n    result: rounds\n"
        )),
        ["E032"]
    );
}

#[test]
fn a_call_result_enum_must_hold_every_end_result() {
    let child = "id: child\nversion: 1\nname: 子流程\nstart: a\nsteps:\n  a: { kind: end, name: 结束, result: rectified }\n  b: { kind: end, name: 结束, result: refused }\n";
    let parent = "id: p\nversion: 1\nname: 测试\nvariables:\n  outcome: { type: enum, values: [rectified] }\n\
                  start: sub\nsteps:\n  sub: { kind: call, name: 约谈, process: child, result: outcome, next: done }\n  done: { kind: end, name: 结束, result: ok }\n";
    let (id, iface) = peek_interface(child).unwrap();
    let ctx = LoadContext {
        processes: Some([id.clone()].into()),
        interfaces: [(id, iface)].into(),
        ..Default::default()
    };
    let d = load_str("t.yaml", parent, &ctx).unwrap_err();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].code, Code::CallResultType);
    assert!(d[0].message.contains("`refused`"), "{}", d[0].message);
    // Checked on its own (no library), the call is not judged.
    assert!(load(parent).is_ok());
}

/// A definition deployed before the call, type and no-effect checks
/// existed still reloads from the store, so its running cases are never
/// stranded; a new deploy of it is refused.
#[test]
fn a_stored_definition_reloads_without_the_checks_added_since() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/broken/e036_timer_on_expiry.yaml"),
    )
    .unwrap();
    let d = load_str("t.yaml", &text, &LoadContext::default()).unwrap_err();
    assert_eq!(d[0].code, Code::NotSupported);
    let stored = LoadContext {
        deployed: true,
        ..Default::default()
    };
    assert!(load_str("t.yaml", &text, &stored).is_ok());
}

/// 60 KB of block-style `- - - …`: the YAML parser recursed once per level
/// and overflowed the stack, aborting the whole process (and the check of
/// every other file with it).
fn deep_block(levels: usize) -> String {
    format!(
        "{MINIMAL}variables:\n  deep:\n    default:\n      {}x\n",
        "- ".repeat(levels)
    )
}

/// Issue 12, finding 4: deeply nested block YAML is a located E001, not a
/// stack overflow, whether it comes in one line of dashes, in indented
/// lines, or in flow brackets inside a block.
#[test]
fn issue12_deeply_nested_yaml_is_an_e001_not_a_crash() {
    let one_line = deep_block(30_000);
    assert!(one_line.len() > 60_000);
    let mut indented = format!("{MINIMAL}variables:\n");
    for i in 0..2_000 {
        indented.push_str(&" ".repeat(2 + 2 * i));
        indented.push_str("- \n");
    }
    // Block nesting just under the pre-scan's bound, then 200 flow levels:
    // the parser takes it, the depth check refuses it.
    let mut mixed = format!("{MINIMAL}variables:\n");
    for i in 0..28 {
        mixed.push_str(&format!("{}k{i}:\n", " ".repeat(2 + i)));
    }
    mixed.push_str(&format!(
        "{}v: {}1{}\n",
        " ".repeat(30),
        "[".repeat(200),
        "]".repeat(200)
    ));
    for (what, text, line) in [
        // The line of the dashes; the line of the 33rd column of nodes;
        // the line of the first list too deep.
        ("one line", &one_line, 13),
        ("indented", &indented, 42),
        ("mixed", &mixed, 39),
    ] {
        let d = load(text).unwrap_err();
        assert_eq!(d.len(), 1, "{what}: {d:?}");
        assert_eq!(d[0].code, Code::YamlSyntax, "{what}: {d:?}");
        assert!(d[0].message.contains("nested"), "{what}: {}", d[0].message);
        assert!(d[0].hint.is_some(), "{what}");
        assert_eq!(d[0].line, line, "{what}: {d:?}");
    }
    // What the leniently read parts of the library see: nothing.
    assert_eq!(peek_id(&one_line), None);
    assert_eq!(peek_interface(&one_line), None);
    assert!(template_files(&one_line).is_empty());
}

/// A definition nested as deep as the language needs is not refused.
#[test]
fn ordinary_nesting_is_accepted() {
    let text = format!(
        "{MINIMAL}variables:\n  tags:\n    type: list<string>\n    default: {}\n",
        "[a, b]"
    );
    assert!(load(&text).is_ok(), "{:?}", load(&text).err());
}

/// `blocks` blocks of five steps in a chain, `blocks * 5 + 1` in all: a
/// task (whose second outcome loops back to the start), a parallel split,
/// its two branches and their join. With `broken`, every task has an
/// unknown key, so the check of every block's first step fails.
fn flow_chain(blocks: usize, broken: bool) -> String {
    let mut t = String::from(
        "id: p\nversion: 1\nname: 测试\nroles: { office: 监督机构 }\nstart: t0\nsteps:\n",
    );
    let typo = if broken { " nxt: x," } else { "" };
    for b in 0..blocks {
        let next = if b + 1 == blocks {
            "done".to_string()
        } else {
            format!("t{}", b + 1)
        };
        t.push_str(&format!(
            "  t{b}: {{ kind: task, name: 审查, assignee: {{ role: office }},{typo} outcomes: {{ ok: {{ label: 通过, next: p{b} }}, again: {{ label: 重来, next: t0 }} }} }}\n\
             \x20 p{b}: {{ kind: parallel, name: 分送, branches: [a{b}, c{b}], join: j{b} }}\n\
             \x20 a{b}: {{ kind: task, name: 甲, assignee: {{ role: office }}, outcomes: {{ ok: {{ label: 完成, next: j{b} }} }} }}\n\
             \x20 c{b}: {{ kind: task, name: 乙, assignee: {{ role: office }}, outcomes: {{ ok: {{ label: 完成, next: j{b} }} }} }}\n\
             \x20 j{b}: {{ kind: join, name: 汇总, next: {next} }}\n"
        ));
    }
    t.push_str("  done: { kind: end, name: 结束, result: done }\n");
    t
}

/// The work of the flow check on this thread while `text` loads.
fn flow_work(text: &str) -> (usize, Result<Definition, Vec<Diagnostic>>) {
    flow::WORK.with(|w| w.set(0));
    let r = load(text);
    (flow::WORK.with(|w| w.get()), r)
}

/// Issue 12, finding 10: validation time grew with the square of the
/// steps (20,000 steps took minutes), the paths to an end being found by
/// sweeping every step until nothing changed, and a broken step leading to
/// every step. The flow check now does a bounded amount of work per step
/// and edge: counted, so this fails on a count, not on a noisy clock
/// (`cargo bench -p duban-core --bench validate` has the timings).
#[test]
fn issue12_the_flow_check_is_linear_in_the_steps() {
    for broken in [false, true] {
        let mut per_step = Vec::new();
        for blocks in [100, 1000] {
            let text = flow_chain(blocks, broken);
            let (work, r) = flow_work(&text);
            assert_eq!(r.is_ok(), !broken, "{:?}", r.err().map(|d| d[0].clone()));
            let steps = blocks * 5 + 1;
            per_step.push(work as f64 / steps as f64);
        }
        // About 10 units a step (an edge is built, followed forwards,
        // reversed, followed backwards); the sweep took thousands.
        assert!(per_step[1] < 16.0, "broken: {broken}: {per_step:?}");
        assert!(
            per_step[1] < per_step[0] * 1.2,
            "broken: {broken}: the work per step grows with the steps: {per_step:?}"
        );
    }
}

/// A stored definition is not flow-checked again on every load (issue 12,
/// finding 10): the deploy checked this text. A new deploy still is.
#[test]
fn a_stored_definition_reloads_without_the_flow_check() {
    let text = format!("{MINIMAL}  b:\n    kind: end\n    name: 孤立\n    result: lost\n");
    let d = load(&text).unwrap_err();
    assert_eq!(d[0].code, Code::UnreachableStep);
    let stored = LoadContext {
        deployed: true,
        ..Default::default()
    };
    let (work, r) = {
        flow::WORK.with(|w| w.set(0));
        let r = load_str("t.yaml", &text, &stored);
        (flow::WORK.with(|w| w.get()), r)
    };
    assert!(r.is_ok());
    assert_eq!(work, 0);
}

/// Issue 13, item 8: the date functions are known to the validator as
/// they are to the runtime. An argument of the wrong type is a type error
/// at load (E035); ages over date, datetime and text variables validate,
/// and a date computed by `date` may be stored in a date variable.
#[test]
fn date_functions_are_typed_at_load() {
    for c in [
        "age_on(decided_on, 5) >= 23",
        "years_between(rounds, now) >= 2",
        "age_on(decided_on, inspectors) > 1",
        "date(now, now) == ''",
        "age_on(decided_on) > 1",
        "decided_on.age_on(now) > 1",
    ] {
        let got = codes(&typed(&[c], &[]));
        assert_eq!(got.len(), 1, "{c}: {got:?}");
        assert_eq!(got[0].0, "E035", "{c}: {got:?}");
    }
    let got = codes(&typed(&["age_on(decided_on, 5) >= 23"], &[]));
    assert!(
        got[0]
            .1
            .contains("found no matching overload for 'age_on' applied to '(string, int)'"),
        "{got:?}"
    );
    let fine = [
        "age_on(decided_on, date(now)) >= 23",
        "years_between(decided_on, now) < 2",
        "years_between(started, date(started)) == 0",
        "age_on(decided_on, '2025-06-01') > 0",
        // A text the sample cannot read as a date fails for its value,
        // not its type, as `timestamp(case_no)` does.
        "age_on(case_no, now) >= 23",
    ];
    let sets = [
        ("decided_on", "date(now)"),
        ("rounds", "age_on(decided_on, now)"),
    ];
    let text = typed(&fine, &sets);
    assert_eq!(codes(&text), Vec::<(String, String)>::new(), "{text}");
    // `date` gives a date, not a timestamp; an int is no date.
    let got = codes(&typed(&[], &[("decided_on", "age_on(decided_on, now)")]));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "E034", "{got:?}");
}

/// The regulations' age check over a `date` variable `birth` validates.
#[test]
fn an_age_check_over_a_birthdate_validates() {
    let text = "id: p\nversion: 1\nname: 测试\nvariables:\n  birth: { type: date, label: 出生日期 }\n\
                start: check\nsteps:\n  check:\n    kind: decision\n    name: 年龄审查\n    branches:\n      \
                - when: \"age_on(birth, date(now)) >= 23\"\n        goto: done\n    default: done\n  \
                done: { kind: end, name: 结束, result: ok }\n";
    assert_eq!(codes(text), Vec::<(String, String)>::new(), "{text}");
    let wrong = text.replace("date(now)) >= 23", "5) >= 23");
    let got = codes(&wrong);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "E035", "{got:?}");
}

/// The example proposed for the docs' date functions (issue 13, item 8)
/// validates.
#[test]
fn the_date_functions_example_validates() {
    let text = "id: p\nversion: 1\nname: 人民监督员任命\nroles: { office: 司法行政机关 }\n\
variables:
  birth:        { type: date, label: 候选人出生日期 }
  appointed_on: { type: date, label: 拟任命日期 }
  last_term_end: { type: datetime, label: 上次任期届满时间 }
start: register
steps:
  register:
    kind: task
    name: 登记拟任命日期
    assignee: { role: office }
    outcomes:
      done:
        label: 已登记
        set: { appointed_on: \"date(now)\" }      # today's date in Beijing time
        next: check_age
  check_age:
    kind: decision
    name: 审查候选人年龄和任职间隔
    branches:
      - when: age_on(birth, appointed_on) < 23   # 拟任命之日未满二十三周岁
        goto: refused
        note: 拟任命之日未满二十三周岁
      - when: years_between(last_term_end, date(now)) < 2
        goto: refused
        note: 上次任期届满未满二年
    default: appointed
  refused:   { kind: end, name: 不予任命, result: refused }
  appointed: { kind: end, name: 提请任命, result: appointed }
";
    assert_eq!(codes(text), Vec::<(String, String)>::new(), "{text}");
}

/// A function CEL does not have (`sizee`), or one given the wrong number of
/// arguments, failed every evaluation at run time and passed validation:
/// both are E035 now, while the functions that exist validate.
#[test]
fn unknown_functions_and_wrong_argument_counts_are_found_at_validation() {
    for c in [
        "sizee(tags) > 0",
        "case_no.startWith('许')",
        "size(tags, tags) > 0",
    ] {
        let got = codes(&typed(&[c], &[]));
        assert_eq!(got.len(), 1, "{c}: {got:?}");
        assert_eq!(got[0].0, "E035", "{c}: {got:?}");
    }
    let got = codes(&typed(&["sizee(tags) > 0"], &[]));
    assert!(got[0].1.contains("`sizee` is no function"), "{got:?}");
    for c in [
        "size(tags) > 0",
        "tags.exists(t, t == 'a')",
        "case_no.startsWith('许')",
        "age_on(decided_on, date(now)) >= 23",
    ] {
        assert_eq!(codes(&typed(&[c], &[])), [], "{c}");
    }
}

/// Issue 13, enum values set by a profile: `values: profile.PARAM` takes
/// every value any profile gives as the enum's at load (a comparison with
/// one of them is no mismatch), and refuses a parameter that is unknown or
/// not a list of texts, a profile that gives no values, a default some
/// profile does not allow, and a text that is not `profile.PARAM`.
#[test]
fn enum_values_a_profile_sets() {
    let text = |values: &str, default: &str| {
        format!(
            "id: p\nversion: 1\nname: 测试\n\
             parameters:\n  sources: {{ type: list<string> }}\n  one: {{ type: string, default: x }}\n\
             profiles:\n  a: {{ name: 甲, values: {{ sources: [人大代表, 其他] }} }}\n  b: {{ name: 乙, values: {{ sources: [人大代表, 律师] }} }}\n\
             variables:\n  source: {{ type: enum, values: {values}{default} }}\n\
             start: d\nsteps:\n  d:\n    kind: decision\n    name: 判断\n    branches:\n      - {{ when: \"source == '律师'\", goto: e }}\n    default: e\n  e: {{ kind: end, name: 结束, result: ok }}\n"
        )
    };
    let def = load(&text("profile.sources", "")).unwrap();
    let v = &def.variables["source"];
    assert_eq!(
        v.ty,
        ValueType::Enum(vec!["人大代表".into(), "其他".into(), "律师".into()])
    );
    assert_eq!(v.values_from.as_deref(), Some("sources"));
    for (values, default, code, says) in [
        (
            "profile.nope",
            "",
            "E010",
            "unknown profile parameter `nope`",
        ),
        (
            "profile.one",
            "",
            "E028",
            "parameter `one` is of type string",
        ),
        (
            "sources",
            "",
            "E023",
            "neither a list of values nor `profile.PARAM`",
        ),
        (
            "profile.sources",
            ", default: 其他",
            "E023",
            "profile `b` allows",
        ),
    ] {
        let got = codes(&text(values, default));
        assert_eq!(got.len(), 1, "{values}{default}: {got:?}");
        assert_eq!(got[0].0, code, "{values}{default}: {got:?}");
        assert!(got[0].1.contains(says), "{values}{default}: {got:?}");
    }
}

/// Issue 21: `extend_on_rest_day: false` ends a term or a bar on its
/// anniversary; it is taken on a `wait_timer`'s timer only, and refused
/// where it would shorten a deadline someone must meet or change nothing.
#[test]
fn a_span_that_does_not_move_is_only_a_timer() {
    let with = |step: &str| {
        format!(
            r#"id: p
version: 1
name: 测试
roles: {{ office: 监督机构 }}
variables:
  appointed_on: {{ type: date, required: true }}
start: s
steps:
{step}
  done: {{ kind: end, name: 结束, result: done }}
"#
        )
    };
    let term = with(
        "  s:\n    kind: wait_timer\n    name: 任期届满\n    timer: { period: 3年, from: var.appointed_on, extend_on_rest_day: false }\n    next: done",
    );
    let def = load(&term).unwrap_or_else(|d| panic!("{d:?}"));
    let StepKind::WaitTimer { timer, .. } = &def.steps["s"].kind else {
        panic!()
    };
    assert!(!timer.extend);
    let task = with(
        "  s:\n    kind: task\n    name: 审查\n    assignee: { role: office }\n    deadline: { period: 30日, extend_on_rest_day: false }\n    outcomes:\n      ok: { label: 同意, next: done }",
    );
    let c = codes(&task);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].0, "E036");
    assert!(c[0].1.contains("民法典 第二百零三条"), "{c:?}");
    let working = term.replace("3年", "5个工作日");
    let c = codes(&working);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].1.contains("has no effect on `5个工作日`"), "{c:?}");
    // The default, written out, is fine anywhere.
    assert!(
        codes(&task.replace("extend_on_rest_day: false", "extend_on_rest_day: true")).is_empty()
    );
}

/// A parallel branch may end the whole instance at an `end` instead of
/// meeting its join (BPMN's terminate end, as docs/process-language.md
/// says); one that does neither is E025.
#[test]
fn a_parallel_branch_may_end_the_instance() {
    let def = |b_next: &str, extra: &str| {
        format!(
            r#"id: p
version: 1
name: 测试
roles: {{ office: 监督机构 }}
start: split
steps:
  split: {{ kind: parallel, name: 分头办理, branches: [a, b], join: joined }}
  a:
    kind: task
    name: 甲
    assignee: {{ role: office }}
    outcomes:
      ok: {{ label: 完成, next: joined }}
  b:
    kind: task
    name: 乙
    assignee: {{ role: office }}
    outcomes:
      stop: {{ label: 终止, next: {b_next} }}
{extra}  joined: {{ kind: join, name: 汇总, next: done }}
  done: {{ kind: end, name: 结束, result: done }}
  stopped: {{ kind: end, name: 终止, result: stopped }}
"#
        )
    };
    assert!(
        codes(&def("stopped", "")).is_empty(),
        "{:?}",
        codes(&def("stopped", ""))
    );
    let looping = def(
        "again",
        "  again:\n    kind: task\n    name: 再办\n    assignee: { role: office }\n    outcomes:\n      back: { label: 返回, next: b }\n",
    );
    let c = codes(&looping);
    assert!(
        c.iter()
            .any(|(code, m)| code == "E025" && m.contains("`b`")),
        "{c:?}"
    );
}
