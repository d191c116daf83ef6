//! The tag index of one measurement: tag key -> tag value -> roaring bitmap of series ids.
//!
//! It is derived state: the series catalog (`catalog.log`) is the persisted source of truth, and
//! the index is rebuilt from it at open (Prometheus' head does the same). That costs one pass over
//! the catalog at start-up and avoids a second file that could disagree with the first.

use std::collections::BTreeMap;

use regex::Regex;
use roaring::RoaringBitmap;

use crate::model::{SeriesId, SeriesKey};

/// A predicate over a series' tags.
#[derive(Debug, Clone)]
pub enum TagPredicate {
    /// `key = 'value'`; `key = ''` matches series without the tag (InfluxQL semantics).
    Eq(String, String),
    /// `key != 'value'`; matches series without the tag too.
    NotEq(String, String),
    /// `key =~ /re/`; a regex that matches "" also matches series without the tag.
    Regex(String, Regex),
    /// `key !~ /re/`.
    NotRegex(String, Regex),
    And(Box<TagPredicate>, Box<TagPredicate>),
    Or(Box<TagPredicate>, Box<TagPredicate>),
    /// Every series of the measurement.
    All,
}

impl TagPredicate {
    pub fn and(a: TagPredicate, b: TagPredicate) -> TagPredicate {
        TagPredicate::And(Box::new(a), Box::new(b))
    }

    pub fn or(a: TagPredicate, b: TagPredicate) -> TagPredicate {
        TagPredicate::Or(Box::new(a), Box::new(b))
    }

    /// Evaluates the predicate against one series key (the oracle for the index in tests).
    pub fn matches(&self, key: &SeriesKey) -> bool {
        match self {
            TagPredicate::Eq(k, v) => key.tag(k).unwrap_or("") == v,
            TagPredicate::NotEq(k, v) => key.tag(k).unwrap_or("") != v,
            TagPredicate::Regex(k, re) => re.is_match(key.tag(k).unwrap_or("")),
            TagPredicate::NotRegex(k, re) => !re.is_match(key.tag(k).unwrap_or("")),
            TagPredicate::And(a, b) => a.matches(key) && b.matches(key),
            TagPredicate::Or(a, b) => a.matches(key) || b.matches(key),
            TagPredicate::All => true,
        }
    }
}

/// Postings of one measurement.
#[derive(Debug, Default, Clone)]
pub struct TagIndex {
    all: RoaringBitmap,
    tags: BTreeMap<Box<str>, BTreeMap<Box<str>, RoaringBitmap>>,
}

impl TagIndex {
    pub fn insert(&mut self, id: SeriesId, key: &SeriesKey) {
        self.all.insert(id.0);
        for (k, v) in &key.tags {
            self.tags.entry(k.clone()).or_default().entry(v.clone()).or_default().insert(id.0);
        }
    }

    pub fn remove(&mut self, id: SeriesId, key: &SeriesKey) {
        self.all.remove(id.0);
        for (k, v) in &key.tags {
            if let Some(values) = self.tags.get_mut(k) {
                if let Some(bm) = values.get_mut(v) {
                    bm.remove(id.0);
                    if bm.is_empty() {
                        values.remove(v);
                    }
                }
                if values.is_empty() {
                    self.tags.remove(k);
                }
            }
        }
    }

    pub fn all(&self) -> &RoaringBitmap {
        &self.all
    }

    pub fn series_count(&self) -> u64 {
        self.all.len()
    }

    pub fn tag_keys(&self) -> impl Iterator<Item = &str> {
        self.tags.keys().map(|k| k.as_ref())
    }

    pub fn tag_values(&self, key: &str) -> impl Iterator<Item = (&str, &RoaringBitmap)> {
        self.tags.get(key).into_iter().flat_map(|m| m.iter().map(|(v, b)| (v.as_ref(), b)))
    }

    /// Series with tag `key` set to any value.
    fn with_key(&self, key: &str) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for (_, bm) in self.tag_values(key) {
            out |= bm;
        }
        out
    }

    /// Resolves a predicate to the set of matching series ids.
    pub fn resolve(&self, pred: &TagPredicate) -> RoaringBitmap {
        match pred {
            TagPredicate::All => self.all.clone(),
            TagPredicate::Eq(k, v) if v.is_empty() => &self.all - &self.with_key(k),
            TagPredicate::Eq(k, v) => {
                self.tags.get(k.as_str()).and_then(|m| m.get(v.as_str())).cloned().unwrap_or_default()
            }
            TagPredicate::NotEq(k, v) => &self.all - &self.resolve(&TagPredicate::Eq(k.clone(), v.clone())),
            TagPredicate::Regex(k, re) => {
                let mut out = RoaringBitmap::new();
                for (v, bm) in self.tag_values(k) {
                    if re.is_match(v) {
                        out |= bm;
                    }
                }
                if re.is_match("") {
                    out |= &self.all - &self.with_key(k);
                }
                out
            }
            TagPredicate::NotRegex(k, re) => {
                &self.all - &self.resolve(&TagPredicate::Regex(k.clone(), re.clone()))
            }
            TagPredicate::And(a, b) => self.resolve(a) & self.resolve(b),
            TagPredicate::Or(a, b) => self.resolve(a) | self.resolve(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(tags: &[(&str, &str)]) -> SeriesKey {
        let mut tags: Vec<(Box<str>, Box<str>)> =
            tags.iter().map(|(k, v)| (Box::from(*k), Box::from(*v))).collect();
        tags.sort();
        SeriesKey { measurement: "m".into(), tags }
    }

    #[test]
    fn influxql_semantics_for_missing_tags() {
        let mut idx = TagIndex::default();
        idx.insert(SeriesId(1), &key(&[("host", "a")]));
        idx.insert(SeriesId(2), &key(&[("host", "b")]));
        idx.insert(SeriesId(3), &key(&[]));
        let ids = |p: &TagPredicate| idx.resolve(p).iter().collect::<Vec<_>>();
        assert_eq!(ids(&TagPredicate::Eq("host".into(), "a".into())), vec![1]);
        assert_eq!(ids(&TagPredicate::NotEq("host".into(), "a".into())), vec![2, 3]);
        assert_eq!(ids(&TagPredicate::Eq("host".into(), "".into())), vec![3]);
        assert_eq!(ids(&TagPredicate::Regex("host".into(), Regex::new("^[ab]$").unwrap())), vec![1, 2]);
        assert_eq!(ids(&TagPredicate::Regex("host".into(), Regex::new(".*").unwrap())), vec![1, 2, 3]);
        assert_eq!(ids(&TagPredicate::NotRegex("host".into(), Regex::new("a").unwrap())), vec![2, 3]);
        idx.remove(SeriesId(1), &key(&[("host", "a")]));
        assert!(idx.resolve(&TagPredicate::Eq("host".into(), "a".into())).is_empty());
        assert_eq!(idx.tag_values("host").count(), 1);
    }

    fn arb_pred() -> impl Strategy<Value = TagPredicate> {
        let leaf = prop_oneof![
            ("[ab]", "[xyz]?").prop_map(|(k, v)| TagPredicate::Eq(k, v)),
            ("[ab]", "[xyz]?").prop_map(|(k, v)| TagPredicate::NotEq(k, v)),
            ("[ab]", "[xyz]|x|\\.\\*|\\^\\$")
                .prop_map(|(k, r)| TagPredicate::Regex(k, Regex::new(&r).unwrap())),
            ("[ab]", "[xyz]|y").prop_map(|(k, r)| TagPredicate::NotRegex(k, Regex::new(&r).unwrap())),
        ];
        leaf.prop_recursive(3, 8, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| TagPredicate::and(a, b)),
                (inner.clone(), inner).prop_map(|(a, b)| TagPredicate::or(a, b)),
            ]
        })
    }

    proptest! {
        /// The bitmap evaluation agrees with evaluating the predicate on every key.
        #[test]
        fn resolve_matches_oracle(
            series in proptest::collection::vec(
                (proptest::option::of("[xyz]"), proptest::option::of("[xyz]")), 0..12),
            pred in arb_pred(),
        ) {
            let mut idx = TagIndex::default();
            let mut keys = vec![];
            for (i, (a, b)) in series.iter().enumerate() {
                let mut t = vec![];
                if let Some(a) = a { t.push(("a", a.as_str())); }
                if let Some(b) = b { t.push(("b", b.as_str())); }
                let k = key(&t);
                idx.insert(SeriesId(i as u32), &k);
                keys.push(k);
            }
            let got: Vec<u32> = idx.resolve(&pred).iter().collect();
            let want: Vec<u32> = keys.iter().enumerate()
                .filter(|(_, k)| pred.matches(k)).map(|(i, _)| i as u32).collect();
            prop_assert_eq!(got, want);
        }
    }
}
