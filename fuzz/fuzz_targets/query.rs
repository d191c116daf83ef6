//! Fuzz target for the query parser: arbitrary bytes, as UTF-8 (lossy), must never panic
//! `parse_query`, and whatever parses must print to text that parses back to the same tree
//! (the round trip the server relies on when it prints statements: `SHOW CONTINUOUS QUERIES`,
//! error messages, logs). The same property runs as a proptest in
//! `query/src/parser/tests.rs` (`whatever_parses_prints_back_to_the_same_tree`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(query) = strata_query::parse_query(&text) {
        let printed = strata_query::ast::format_query(&query);
        let again = match strata_query::parse_query(&printed) {
            Ok(q) => q,
            Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
        };
        assert_eq!(query, again, "{text:?} printed as {printed:?} parses to another tree");
    }
});
