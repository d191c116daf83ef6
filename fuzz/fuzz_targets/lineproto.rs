//! Line protocol parser: arbitrary bytes must never panic, and every accepted line
//! must print (`write_line`) to canonical text that parses back to the same point,
//! floats compared bit for bit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_lineproto::{write_line, Parser, Point, Value};

/// Floats as bit patterns, so `-0.0` vs `0.0` and lost precision are caught.
fn bits(mut p: Point) -> Point {
    for (_, v) in &mut p.fields {
        if let Value::F64(f) = *v {
            *v = Value::Str(format!("f64:{:016x}", f.to_bits()));
        }
    }
    p
}

fuzz_target!(|data: &[u8]| {
    for result in Parser::new(data) {
        match result {
            Ok(line) => {
                assert_eq!(line.tags().count(), line.tag_count());
                assert_eq!(line.fields().count(), line.field_count());
                let point = line.to_point();
                let mut printed = Vec::new();
                write_line(&mut printed, &line);
                let mut again = Parser::new(&printed);
                let reparsed = match again.next() {
                    Some(Ok(l)) => l,
                    other => panic!(
                        "canonical output {:?} does not parse: {other:?}",
                        String::from_utf8_lossy(&printed)
                    ),
                };
                assert!(again.next().is_none());
                assert_eq!(bits(reparsed.to_point()), bits(point.clone()));
                let mut owned = Vec::new();
                point.write_to(&mut owned).expect("a parsed line is representable");
                assert_eq!(owned, printed);
            }
            Err(e) => {
                assert!(e.line_no >= 1 && e.column >= 1);
                assert!(e.excerpt().len() <= 3 * 64);
                let _ = e.to_string();
            }
        }
    }
    // The line-length limit, with a limit taken from the input.
    let max = data.first().map_or(0, |&b| usize::from(b));
    for line in Parser::new(data).with_max_line_len(max).flatten() {
        assert!(line.raw().len() <= max);
    }
});
