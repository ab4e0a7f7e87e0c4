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
