//! Typesets one document's parts, given as JSON on stdin (the fields of
//! `duban_typeset::Official`), as PDF on stdout:
//! `cargo run -p duban-typeset --example typeset < letter.json > letter.pdf`.

use std::io::{Read, Write};

fn main() {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .expect("reading stdin");
    let doc: duban_typeset::Official = serde_json::from_str(&input).expect("the parts as JSON");
    match duban_typeset::shared().document(&doc) {
        Ok(pdf) => std::io::stdout().write_all(&pdf).expect("writing stdout"),
        Err(e) => {
            eprintln!("typeset: {e}");
            std::process::exit(1);
        }
    }
}
